"""Shared fixtures: a temporary database bound to the models, pbxctl against one."""

import pytest

from core.config import load_settings
from core.database import connect


@pytest.fixture(autouse=True)
def _no_server_outlives_its_test():
    """What is left of the process groups of servers a test killed with SIGKILL
    (tests/support.py ServerProcess) goes with the test."""
    yield
    from tests.support import sweep_orphans

    sweep_orphans()


@pytest.fixture(scope="session")
def dns_server():
    """The DNS server on loopback that every test's SRV lookups go to (tests/dns_server.py)."""
    from tests.dns_server import DnsServer

    with DnsServer() as server:
        yield server


@pytest.fixture(autouse=True)
def dns(dns_server):
    """In-process SRV lookups (sipd/trunks/srv.py) ask the tests' own DNS server, never
    the machine's resolver; each test starts with no records and an empty cache."""
    from sipd.trunks import srv

    dns_server.clear()
    srv.configure([dns_server.address])
    yield dns_server
    dns_server.clear()


@pytest.fixture
def settings(tmp_path):
    return load_settings({"PBX_DB": str(tmp_path / "pbx.db"), "PBX_REALM": "pbx.test"})


@pytest.fixture
def database(settings):
    db = connect(settings)
    yield db
    db.close()


@pytest.fixture
def pbxctl(tmp_path, monkeypatch, capsys):
    """Run pbxctl in-process against a database in tmp_path: run(*argv) ->
    (exit status, stdout, stderr). Nothing of the caller's environment leaks in
    (no PBX_ setting, no SSH_CLIENT/SUDO_USER for the audit's "who")."""
    import os

    import pbxcli
    from core.models import db

    for name in list(os.environ):
        if name.startswith("PBX_") or name in ("SSH_CLIENT", "SUDO_USER"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PBX_DB", str(tmp_path / "pbx.db"))
    monkeypatch.setenv("PBX_REALM", "pbx.test")
    monkeypatch.setenv("PBX_RUN_DIR", str(tmp_path / "run"))

    def run(*argv):
        status = pbxcli.main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    run.db_path = tmp_path / "pbx.db"
    yield run
    if not db.is_closed():
        db.close()


# Built prompts are shared by every test of a run and kept between runs outside
# the clone, keyed by the prompts table's hash: a changed text builds a new set.
PROMPT_CACHE = "/var/cache/pbx-test-prompts"


@pytest.fixture(scope="session")
def built_prompts():
    """The directory of a complete build of core/prompts.py's table (PBX_PROMPTS_DIR)."""
    import fcntl
    import os
    from pathlib import Path

    from core import prompts

    root = Path(os.environ.get("PBX_TEST_PROMPT_CACHE", PROMPT_CACHE))
    root.mkdir(parents=True, exist_ok=True)
    directory = root / prompts.table_hash()
    # Two test runs at once (helpers share the machine) build it once.
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        prompts.build(directory=directory)
    return directory


@pytest.fixture
def prompts_env(built_prompts, tmp_path, monkeypatch):
    """PBX_PROMPTS_DIR at the built prompts, PBX_SOUNDS_DIR empty in tmp_path."""
    monkeypatch.setenv("PBX_PROMPTS_DIR", str(built_prompts))
    monkeypatch.setenv("PBX_SOUNDS_DIR", str(tmp_path / "sounds"))
    return built_prompts

"""Shared fixtures: a temporary database bound to the models."""

import pytest

from core.config import load_settings
from core.database import connect


@pytest.fixture
def settings(tmp_path):
    return load_settings({"PBX_DB": str(tmp_path / "pbx.db"), "PBX_REALM": "pbx.test"})


@pytest.fixture
def database(settings):
    db = connect(settings)
    yield db
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

"""A phone that is challenged and never answers, against a real sipd: recorded
(sipd/unanswered.py) and told apart on the extension's page from a phone that
never reached the PBX (app/extensions/diagnosis.py).

Two real phones that cannot answer: sipp sending REGISTER without ever
authenticating (register_challenge.xml), and Debian 12's baresip 1.0 on an
extension challenged with SHA-256 alone, which it cannot compute ("Register:
Function not implemented"). For baresip the page's advice is then followed
(`pbxctl ext digest 1002 MD5`) and the phone registers.

The panel is Flask's test client on the database sipd uses. sipd records an
unanswered challenge unanswered.WAIT (10) seconds after it: the tests wait for
the row, with a deadline.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from sipd import unanswered
from tests.sip import callkit as ck
from tests.sip.softphone import Baresip
from tests.sip.test_baresip_audio import wait_registered
from tests.support import LOOPBACK, ROOT, Sipd
from tests.web.panel_testing import ADMIN, REALM, Rows, make_app

PASSWORD = "never-answer-7"
DEADLINE = unanswered.WAIT + 15  # the row comes WAIT s after the challenge, checked every 2 s


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "WORK_ROOT", tmp_path)


@pytest.fixture
def panel(tmp_path):
    """The panel on a fresh database with extensions 1001 and 1002, logged in."""
    from core.models import db

    app = make_app(tmp_path)
    with db.connection_context():
        Rows().extension("1001", password=PASSWORD)
        Rows().extension("1002", password=PASSWORD)
    client = app.test_client()
    client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]})
    return client


def pbxctl(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBX_")}
    env.update(PBX_DB=str(tmp_path / "pbx.db"), PBX_REALM=REALM, PBX_PYTHON=sys.executable)
    result = subprocess.run([str(ROOT / "pbxctl"), *args], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


def challenge_rows(db_path, number: str) -> list[dict]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(r) for r in connection.execute(
            "SELECT * FROM auth_attempt WHERE number = ? AND result = 'challenge'", (number,))]


def test_sipp_never_answering_is_challenged_not_lost(tmp_path, panel):
    page = panel.get("/extensions/1001").get_data(as_text=True)
    assert "never reached the PBX" in page  # nothing came yet: that is what it says
    with Sipd(tmp_path / "pbx.db", PBX_SIP_WORKERS="1") as sipd:
        sipp = ck.Sipp("no-answer", "register_challenge.xml", sipd.address,
                       inject=[["1001"], ["1001"], ["7777"]], calls=3, rate=10)
        assert sipp.start().wait() == 0, sipp.trace()
        rows = ck.wait_for(lambda: challenge_rows(sipd.db_path, "1001"), DEADLINE)
        assert [(r["times"], r["reason"], r["user_agent"], r["source_port"]) for r in rows] == [
            (2, "never answered the challenge", "sipp register_challenge", sipp.local_port)]
        assert ck.wait_for(lambda: "never answered the challenge for 1001" in sipd.log(), 5)
        assert (f"{LOOPBACK}:{sipp.local_port} (sipp register_challenge) never answered the"
                " challenge for 1001 (2 times, offered MD5)") in sipd.log()
        # a number that is no extension leaves nothing (a scanner's walk)
        assert challenge_rows(sipd.db_path, "7777") == []
    page = panel.get("/extensions/1001").get_data(as_text=True)
    assert "never reached the PBX" not in page
    assert (f"A phone at {LOOPBACK}:{sipp.local_port} UDP (sipp register_challenge) was"
            " challenged 2 times for 1001 and never answered with credentials.") in page
    assert "the digest algorithm offered (MD5)" in page


def test_baresip_that_cannot_answer_sha256_is_diagnosed_and_then_registers(tmp_path, panel):
    pbxctl(tmp_path, "ext", "digest", "1002", "SHA-256")
    with Sipd(tmp_path / "pbx.db", PBX_SIP_WORKERS="1") as sipd:
        phone = Baresip("sha-only", "1002", PASSWORD, sipd.address,
                        f"{LOOPBACK}:{ck.free_ports()}", 1000.0)
        try:
            phone.start()
            assert ck.wait_for(lambda: "Function not implemented" in phone.log(), 10), (
                phone.log())
            rows = ck.wait_for(lambda: challenge_rows(sipd.db_path, "1002"), DEADLINE)
            assert rows and rows[0]["user_agent"].startswith("baresip"), (rows, sipd.log())
            assert "offered SHA-256)" in sipd.log()
        finally:
            phone.stop()
        page = panel.get("/extensions/1002").get_data(as_text=True)
        assert "never reached the PBX" not in page
        assert "was challenged 1 time for 1002 and never answered with credentials" in page
        assert "the digest algorithm offered (SHA-256)" in page
        assert "pbxctl ext digest 1002 MD5" in page

        # What the page says to do, done: the phone registers at its next try.
        assert "challenged with MD5 (its own choice)" in pbxctl(
            tmp_path, "ext", "digest", "1002", "MD5").stdout
        again = Baresip("md5", "1002", PASSWORD, sipd.address,
                        f"{LOOPBACK}:{ck.free_ports()}", 1000.0)
        try:
            again.start()
            wait_registered(sipd, again)
        finally:
            again.stop()
    assert 'id="unanswered"' not in panel.get("/extensions/1002").get_data(as_text=True)

"""Message waiting (sipd/mwi.py, RFC 3842) against a real sipd and a real phone:
baresip 1.0 with its mwi module SUBSCRIBEs to message-summary after registering
(answered 401, then 200 and a NOTIFY), sees "Messages-Waiting: yes" when a message
is left (written to the database by another process, as the panel or pbxctl
would), "no" once it is heard, and the state again after sipd restarts. A baresip
without the mwi module gets the same news unsolicited. What the phone received is
read from its own SIP trace (baresip -s)."""

from __future__ import annotations

import re
import wave

import pytest

from tests.sip import callkit as ck
from tests.sip.softphone import Baresip
from tests.sip.test_baresip_audio import wait_registered
from tests.support import LOOPBACK


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "WORK_ROOT", tmp_path)


@pytest.fixture
def phones():
    started: list[Baresip] = []
    yield started
    for phone in started:
        phone.stop()


def notifies(phone: Baresip) -> list[str]:
    """The Messages-Waiting and Voice-Message lines of each NOTIFY the phone received."""
    found = []
    for block in re.split(r"(?=\nNOTIFY sip:)", phone.log()):
        if not block.startswith("\nNOTIFY sip:"):
            continue
        waiting = re.search(r"Messages-Waiting: (\w+)", block)
        voice = re.search(r"Voice-Message: ([\d/]+)", block)
        if waiting:
            found.append(f"{waiting.group(1)} {voice.group(1) if voice else '?'}")
    return found


def wait_notify(phone: Baresip, server, wanted: str, after: int = 0, timeout: float = 10):
    got = ck.wait_for(lambda: wanted in notifies(phone)[after:], timeout=timeout)
    assert got, (f"{phone.name} never got a NOTIFY {wanted!r}: {notifies(phone)}\n"
                 f"{phone.log()[-3000:]}\n--- sipd\n{server.log()[-3000:]}")
    return len(notifies(phone))


def leave_message(server, tmp_path, number: str):
    """A message as sipd's voicemail writes one, from this process (as pbxctl would)."""
    from core import voicemail
    from core.config import load_settings
    from core.database import connect
    from core.models import db

    settings = load_settings({"PBX_DB": str(server.db_path), "PBX_REALM": ck.REALM,
                              "PBX_VOICEMAIL_DIR": str(tmp_path / "vm")})
    connect(settings)
    try:
        path = voicemail.new_recording_path(number, settings, 1.79e9)
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(b"\x00\x10" * 8000 * 3)
        return voicemail.add_message(number, path, 3.0, settings, "1002", "Desk 1002").id
    finally:
        db.close()


def hear(server, message_id: int) -> None:
    from core import voicemail
    from core.config import load_settings
    from core.database import connect
    from core.models import db

    connect(load_settings({"PBX_DB": str(server.db_path), "PBX_REALM": ck.REALM}))
    try:
        voicemail.mark_heard(message_id)
    finally:
        db.close()


def test_subscribed_phone_sees_the_lamp_on_then_off_and_again_after_restart(tmp_path, phones):
    server = ck.SipdServer(tmp_path, numbers=("1001", "1002"), voicemail=("1001",))
    server.start()
    try:
        phone = Baresip("mwi", "1001", ck.PASSWORD, server.address,
                        f"{LOOPBACK}:{ck.free_ports()}", 440.0, modules=("mwi.so",))
        phones.append(phone.start())
        wait_registered(server, phone)
        seen = wait_notify(phone, server, "no 0/0")
        assert "[MWI] 1001 subscribed to mailbox 1001" in server.log()
        message = leave_message(server, tmp_path, "1001")
        seen = wait_notify(phone, server, "yes 1/0", after=seen)
        hear(server, message)
        seen = wait_notify(phone, server, "no 0/1", after=seen)
        server.stop()
        server.restart()
        # The new sipd knows no subscription: it tells the registered phone the
        # state from the database at once, unsolicited.
        wait_notify(phone, server, "no 0/1", after=seen)
        assert "Unsolicited NOTIFY mailbox 1001" in server.log()
    finally:
        server.stop()


def test_a_phone_that_does_not_subscribe_is_told_unsolicited(tmp_path, phones):
    server = ck.SipdServer(tmp_path, numbers=("1001", "1002"), voicemail=("1001",))
    server.start()
    try:
        phone = Baresip("plain", "1001", ck.PASSWORD, server.address,
                        f"{LOOPBACK}:{ck.free_ports()}", 440.0)
        phones.append(phone.start())
        wait_registered(server, phone)
        seen = wait_notify(phone, server, "no 0/0")
        leave_message(server, tmp_path, "1001")
        wait_notify(phone, server, "yes 1/0", after=seen)
        assert "\nSUBSCRIBE sip:" not in phone.log()  # it never subscribed
    finally:
        server.stop()


def test_subscribe_to_another_mailbox_is_refused(tmp_path):
    """sipp as 1002 asks for 1001's lamp: 401, then 403 with the right password."""
    server = ck.SipdServer(tmp_path, numbers=("1001", "1002"), voicemail=("1001", "1002"))
    server.start()
    try:
        sipp = ck.Sipp("subscribe", "subscribe_other.xml", server.address,
                       inject=[ck.user_row("1002", ck.PASSWORD, "1001")])
        assert sipp.start().wait() == 0, ck.explain(sipp, server=server)
        assert sipp.statuses("SUBSCRIBE") == [401, 403], ck.explain(sipp, server=server)
        assert "SUBSCRIBE of 1002 to mailbox 1001" in server.log()
    finally:
        server.stop()

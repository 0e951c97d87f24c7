"""Voicemail e-mail across a restart, end to end: a real sipd whose mail server
(PBX_SMTP_HOST) is down when a message is left by phone keeps the message and
logs the failure; stopped, the mail server started (aiosmtpd on loopback) and
sipd started again, the mail arrives with the message's WAV attached, and so
does that of a message whose first try the stopped sipd never made. Each
message is mailed exactly once: a further restart sends nothing again, and a
new message's mail after it is the only new mail."""

from __future__ import annotations

import re
import sqlite3
import time

import pytest
from aiosmtpd.controller import Controller

from tests.sip import callkit as ck
from tests.sip.test_voicemail_phone import database, leave_message, make_server, seed
from tests.unit.test_voicemail_mail import Inbox

ADDRESS = "desk@office.example"


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "WORK_ROOT", tmp_path)


def row(server, message_id: int) -> dict:
    with sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True, timeout=5) as connection:
        connection.row_factory = sqlite3.Row
        return dict(
            connection.execute(
                "SELECT * FROM voicemail_message WHERE id = ?", (message_id,)
            ).fetchone()
        )


def mailed_ids(inbox: Inbox) -> list[int]:
    """The message id of each mail received, from its attachment's name (NUMBER-ID-...)."""
    ids = []
    for mail in inbox.messages:
        (attachment,) = list(mail.iter_attachments())
        ids.append(int(re.match(r"1002-(\d+)-", attachment.get_filename()).group(1)))
    return ids


def test_a_mail_that_failed_is_sent_after_a_restart_exactly_once(tmp_path):
    smtp_port = ck.free_ports()
    server = make_server(
        tmp_path,
        PBX_SMTP_HOST="127.0.0.1",
        PBX_SMTP_PORT=str(smtp_port),
        PBX_SMTP_FROM="pbx@office.example",
        PBX_SMTP_STARTTLS="no",
    )
    with database(server):
        from core import voicemail

        voicemail.set_voicemail("1002", True, email=ADDRESS)
    inbox, controller = Inbox(), None
    server.start()
    try:
        leave_message(server)
        failed = (
            "[VM] E-mail of message 1 (mailbox 1002) to desk@office.example failed (try 1 of 8)"
        )
        assert ck.wait_for(lambda: failed in server.log(), timeout=10), server.log()[-3000:]
        first = row(server, 1)
        assert first["emailed_at"] is None and first["email_tries"] == 1, first
        assert first["email_due_at"] > time.time() and "127.0.0.1" in first["email_error"]
        assert (tmp_path / "vm" / first["path"]).is_file()
        server.stop()

        # A message whose mail the stopped sipd had not tried yet (as the
        # application leaves it: due from when it was kept).
        second = seed(server, "1002", "msg2", time.time())
        with database(server):
            from core.models import VoicemailMessage

            VoicemailMessage.update(email_due_at=time.time()).where(
                VoicemailMessage.id == second
            ).execute()

        controller = Controller(inbox, hostname=ck.LOOPBACK, port=smtp_port)
        controller.start()
        server.restart()
        assert ck.wait_for(lambda: len(inbox.messages) >= 2, timeout=20), server.log()[-3000:]
        assert (
            "[VM] E-mail of 2 voicemail message(s) still to be sent from before this"
            " start: message 1, 2"
        ) in server.log()
        assert sorted(mailed_ids(inbox)) == [1, second]
        for mail in inbox.messages:
            assert mail["To"] == ADDRESS
            (attachment,) = list(mail.iter_attachments())
            message = row(server, mailed_ids(inbox)[inbox.messages.index(mail)])
            assert attachment.get_content_type() == "audio/wav"
            assert attachment.get_content() == (tmp_path / "vm" / message["path"]).read_bytes()
        for message_id in (1, second):
            mailed = row(server, message_id)
            assert mailed["emailed_at"] and mailed["email_due_at"] is None, mailed
            assert mailed["email_error"] == ""

        # Started once more, nothing is still to be sent; the next message's mail
        # is the one new mail.
        server.stop()
        server.restart()
        leave_message(server)
        assert ck.wait_for(lambda: len(inbox.messages) >= 3, timeout=10), server.log()[-3000:]
        assert sorted(mailed_ids(inbox)) == [1, second, second + 1]
        assert "still to be sent" not in server.log()
    finally:
        server.stop()
        if controller is not None:
            controller.stop()

"""Voicemail by e-mail (core/voicemail_mail.py) against a real SMTP server on loopback
(aiosmtpd): the WAV arrives attached, a server that is down is tried again (the
delays on a fake sleep, nothing waits), given up after the last try, and the outcome
is written on the message's row. The message is left through the voicemail
application with the scripted call (tests/unit/voicemail_fake.py)."""

from __future__ import annotations

import email
import socket
from email import policy

import pytest
from aiosmtpd.controller import Controller

from core import accounts, voicemail
from core.config import load_settings
from core.database import connect
from core.models import VoicemailMessage, db
from core.voicemail_mail import Mailer, MailError, compose, send
from sipd.apps import voicemail as app
from tests.unit.voicemail_fake import FakeCall


class Inbox:
    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.envelopes.append(envelope)
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    inbox.port = controller.port
    yield inbox
    controller.stop()


def settings_for(tmp_path, port, **extra):
    return load_settings({"PBX_DB": str(tmp_path / "pbx.db"), "PBX_REALM": "pbx.test",
                          "PBX_VOICEMAIL_DIR": str(tmp_path / "vm"),
                          "PBX_PROMPTS_DIR": str(tmp_path / "prompts"),
                          "PBX_SMTP_HOST": "127.0.0.1", "PBX_SMTP_PORT": str(port),
                          "PBX_SMTP_FROM": "pbx@office.example", **extra})


def message_for(settings, wav=b"RIFF-wav-bytes"):
    return compose(settings, "desk@office.example", "1001", "1002", "Desk 1002",
                   1_790_000_000, 65.4, wav, "1001-1-x.wav")


def test_the_wav_arrives_attached(tmp_path, smtp):
    settings = settings_for(tmp_path, smtp.port)
    send(settings, message_for(settings, b"RIFF\x00\x01wav"))
    (got,) = smtp.messages
    assert got["To"] == "desk@office.example" and got["From"] == "pbx@office.example"
    assert got["Subject"] == "New voicemail for 1001 from Desk 1002 <1002>"
    assert "Length: 1:05" in got.get_body(("plain",)).get_content()
    (attachment,) = list(got.iter_attachments())
    assert attachment.get_content_type() == "audio/wav"
    assert attachment.get_filename() == "1001-1-x.wav"
    assert attachment.get_content() == b"RIFF\x00\x01wav"


def test_starttls_required_but_not_offered_is_refused(tmp_path, smtp):
    settings = settings_for(tmp_path, smtp.port, PBX_SMTP_STARTTLS="yes")
    with pytest.raises(MailError, match="does not offer STARTTLS"):
        send(settings, message_for(settings))
    assert smtp.messages == []


def test_a_server_that_is_down_is_tried_again(tmp_path, smtp):
    down = free_port()
    settings = settings_for(tmp_path, down)
    notes, slept = [], []

    def sleep(seconds):
        slept.append(seconds)
        if len(slept) == 2:  # the server comes back after the second failure
            mailer.settings = settings_for(tmp_path, smtp.port)

    mailer = Mailer(settings, spawn=lambda f, *a: f(*a), sleep=sleep,
                    record=lambda i, e: notes.append((i, e)))
    mailer.queue(7, message_for(settings), "1001")
    assert slept == [30, 120]
    assert [e.split(":")[0] for _, e in notes[:2]] == ["127.0.0.1", "127.0.0.1"]
    assert notes[-1] == (7, "") and len(smtp.messages) == 1


def test_given_up_after_the_last_try(tmp_path):
    settings = settings_for(tmp_path, free_port())
    notes = []
    mailer = Mailer(settings, spawn=lambda f, *a: f(*a), sleep=lambda s: None,
                    record=lambda i, e: notes.append(e), delays=(1, 2))
    mailer.queue(3, message_for(settings), "1001")
    assert len(notes) == 3 and notes[-1].startswith("given up: 127.0.0.1:")


def test_no_smtp_host_sends_nothing(tmp_path):
    settings = load_settings({"PBX_DB": str(tmp_path / "pbx.db")})
    spawned = []
    Mailer(settings, spawn=lambda *a: spawned.append(a), sleep=None,
           record=None).queue(1, None, "1001")
    assert spawned == []


def test_a_message_left_by_phone_is_mailed_and_noted(tmp_path, smtp):
    settings = settings_for(tmp_path, smtp.port)
    connect(settings)
    try:
        accounts.create_extension("1001", "pbx.test", generate=True)
        voicemail.set_voicemail("1001", True, email="desk@office.example")
        mailer = app.mailer_for(settings, spawn=lambda f, *a: f(*a), sleep=lambda s: None)
        app.install(app.Context(settings=settings,
                                new_message=app.email_new_message(mailer, settings)))
        call = FakeCall("1002", "1001", "no_answer", caller_name="Desk 1002",
                        recordings=[(4.0, "hangup")])
        app.run(call)
        (row,) = VoicemailMessage.select()
        (got,) = smtp.messages
        (attachment,) = list(got.iter_attachments())
        assert attachment.get_content() == voicemail.message_file(row, settings).read_bytes()
        assert row.emailed_at is not None and row.email_error == ""
    finally:
        app.install(app.Context())
        db.close()

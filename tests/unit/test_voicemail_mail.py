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
from sipd import voicemail_mail as mailing
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


class Clock:
    """The mailer's clock, moved by its sleep: nothing waits."""

    def __init__(self, now=1_790_000_000.0):
        self.now = now
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(round(seconds, 3))
        self.now += seconds


def test_a_server_that_is_down_is_tried_again(tmp_path, smtp):
    down = free_port()
    settings = settings_for(tmp_path, down)
    notes, clock = [], Clock()

    def sleep(seconds):
        clock.sleep(seconds)
        if len(clock.slept) == 2:  # the server comes back after the second failure
            mailer.settings = settings_for(tmp_path, smtp.port)

    mailer = Mailer(settings, spawn=lambda f, *a: f(*a), sleep=sleep, clock=clock,
                    record=lambda *note: notes.append(note))
    start = clock.now
    mailer.queue(7, message_for(settings), "1001")
    assert clock.slept == [30, 120]
    # After each failure: the error, the tries made and when the next is due.
    assert [(i, e.split(":")[0], t, d) for i, e, t, d in notes[:2]] == [
        (7, "127.0.0.1", 1, start + 30), (7, "127.0.0.1", 2, start + 150)]
    assert notes[-1] == (7, "", 3, None) and len(smtp.messages) == 1


def test_given_up_after_the_last_try(tmp_path):
    settings = settings_for(tmp_path, free_port())
    notes, clock = [], Clock()
    mailer = Mailer(settings, spawn=lambda f, *a: f(*a), sleep=clock.sleep, clock=clock,
                    record=lambda *note: notes.append(note), delays=(1, 2))
    mailer.queue(3, message_for(settings), "1001")
    assert len(notes) == 3 and notes[-1][1].startswith("given up: 127.0.0.1:")
    assert notes[-1][2:] == (3, None)


def test_queued_again_it_goes_on_from_its_place_on_the_schedule(tmp_path):
    """After a restart: tried once at once; failing, the next try at its due time
    counts as the third (two were made before), and the last is the eighth."""
    settings = settings_for(tmp_path, free_port())
    notes, clock = [], Clock()
    mailer = Mailer(settings, spawn=lambda f, *a: f(*a), sleep=clock.sleep, clock=clock,
                    record=lambda *note: notes.append(note))
    mailer.queue(5, message_for(settings), "1001", tries=2, due=clock.now + 100, early=True)
    assert clock.slept == [100, 600, 1800, 3600, 4 * 3600, 12 * 3600]
    assert [t for _, _, t, _ in notes] == [3, 4, 5, 6, 7, 8]
    assert notes[-1][1].startswith("given up:") and notes[-1][3] is None


def test_queued_again_with_every_try_made_it_is_closed(tmp_path):
    settings = settings_for(tmp_path, free_port())
    notes, clock = [], Clock()
    mailer = Mailer(settings, spawn=lambda f, *a: f(*a), sleep=clock.sleep, clock=clock,
                    record=lambda *note: notes.append(note))
    mailer.queue(5, message_for(settings), "1001", tries=8, due=clock.now - 1, early=True)
    assert notes == [(5, "given up after 8 tries", 8, None)] and clock.slept == []


def test_queued_again_and_the_server_is_back_it_is_sent_at_once(tmp_path, smtp):
    settings = settings_for(tmp_path, smtp.port)
    notes, clock = [], Clock()
    mailer = Mailer(settings, spawn=lambda f, *a: f(*a), sleep=clock.sleep, clock=clock,
                    record=lambda *note: notes.append(note))
    mailer.queue(5, message_for(settings), "1001", tries=2, due=clock.now + 600, early=True)
    assert clock.slept == [] and notes == [(5, "", 3, None)] and len(smtp.messages) == 1


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
        mailer = mailing.mailer_for(settings, spawn=lambda f, *a: f(*a), sleep=lambda s: None)
        app.install(app.Context(settings=settings,
                                new_message=mailing.email_new_message(mailer, settings)))
        call = FakeCall("1002", "1001", "no_answer", caller_name="Desk 1002",
                        recordings=[(4.0, "hangup")])
        app.run(call)
        (row,) = VoicemailMessage.select()
        (got,) = smtp.messages
        (attachment,) = list(got.iter_attachments())
        assert attachment.get_content() == voicemail.message_file(row, settings).read_bytes()
        assert row.emailed_at is not None and row.email_error == ""
        assert (row.email_tries, row.email_due_at) == (1, None)
    finally:
        app.install(app.Context())
        db.close()


def _left(settings, number="1001", email="desk@office.example", **row):
    """A message as the application keeps one, with e-mail state `row`."""
    if voicemail.mailbox_of(number) is None:
        accounts.create_extension(number, "pbx.test", generate=True)
    voicemail.set_voicemail(number, True, email=email)
    path = voicemail.new_recording_path(number, settings, 1_790_000_000)
    path.write_bytes(b"RIFF-" + number.encode())
    message = voicemail.add_message(number, path, 2.0, settings, "1002")
    VoicemailMessage.update(**row).where(VoicemailMessage.id == message.id).execute()
    return message.id


def test_at_start_what_was_still_to_be_sent_is_sent(tmp_path, smtp):
    settings = settings_for(tmp_path, smtp.port)
    connect(settings)
    try:
        pending = _left(settings, email_tries=2, email_due_at=1.79e9, email_error="down")
        _left(settings, emailed_at=1.79e9, email_tries=1)  # sent already
        _left(settings, email_tries=8, email_error="given up: down")  # given up
        no_address = _left(settings, "1003", email="", email_tries=1, email_due_at=1.79e9)
        mailer = mailing.mailer_for(settings, spawn=lambda f, *a: f(*a), sleep=lambda s: None)
        assert mailing.resend_pending(mailer, settings) == 1
        (got,) = smtp.messages
        (attachment,) = list(got.iter_attachments())
        assert attachment.get_content() == b"RIFF-1001"
        row = VoicemailMessage.get_by_id(pending)
        assert row.emailed_at and (row.email_error, row.email_tries, row.email_due_at) == (
            "", 3, None)
        assert VoicemailMessage.get_by_id(no_address).email_due_at is None
        assert mailing.resend_pending(mailer, settings) == 0 and len(smtp.messages) == 1
    finally:
        db.close()


def test_migration_0017_makes_a_mail_still_being_tried_due(tmp_path):
    """Rows from before 0017: one whose mail was failing (not given up) within the
    last day is due; sent, given up, older or never tried ones are not."""
    import importlib
    import time

    from core.models import SchemaVersion

    database = connect(settings_for(tmp_path, 25), migrate=False)
    try:
        database.create_tables([SchemaVersion])
        from core import migrations

        for number, name in migrations.available():
            if number < 17:
                importlib.import_module(f"core.migrations.{name}").up(None, database)
                SchemaVersion.create(version=number)
        database.execute_sql(
            "INSERT INTO extension (number, name, realm, ha1_md5, ha1_sha256, enabled,"
            " created_at, updated_at) VALUES ('1001', '', 'pbx.test', '', '', 1, 0, 0)")
        database.execute_sql(
            "INSERT INTO mailbox (extension_id, enabled, pin_hash, greeting, email, language,"
            " created_at, updated_at) VALUES (1, 1, '', '', 'a@b.example', '', 0, 0)")
        now = time.time()
        for error, emailed, received in (("down", None, now - 60), ("", now, now - 60),
                                         ("given up: down", None, now - 60),
                                         ("down", None, now - 3 * 86400), ("", None, now)):
            database.execute_sql(
                "INSERT INTO voicemail_message (mailbox_id, caller, caller_name, received,"
                " seconds, path, folder, emailed_at, email_error) VALUES"
                " (1, '', '', ?, 2, 'x.wav', 'new', ?, ?)", (received, emailed, error))
        assert migrations.migrate(database)[0] == 17  # and any after it
        due = [row[0] for row in database.execute_sql(
            "SELECT email_due_at IS NOT NULL FROM voicemail_message ORDER BY id")]
        assert due == [1, 0, 0, 0, 0]
    finally:
        database.close()

"""The daemon's side of voicemail e-mail (core/voicemail_mail.py does the sending):
the Mailer whose outcomes and schedule are written on the message's row, each new
message queued as the voicemail application keeps it (sipd/apps/voicemail.py
Context.new_message), and at start-up what an earlier sipd had still to send.

A message to be mailed has email_due_at set (migration 0017) from the moment it is
kept until it is sent or given up, so nothing is lost when sipd stops between two
tries: `resend_pending` (sipd/daemon.py) queues each such message again, tried at
once and then on its schedule from where it was (core/voicemail_mail.Mailer).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from core import voicemail
from core.config import Settings
from core.models import Extension, Mailbox, VoicemailMessage
from core.voicemail_mail import Mailer, compose
from sipd.apps.voicemail import _write

log = logging.getLogger("sipd")


def _note(message_id: int, **fields) -> None:
    with _write():
        VoicemailMessage.update(**fields).where(VoicemailMessage.id == message_id).execute()


def record(message_id: int, error: str, tries: int, due: float | None) -> None:
    """Mailer's record: one try's outcome and what is next, on the row."""
    _note(
        message_id,
        emailed_at=None if error else time.time(),
        email_error=error,
        email_tries=tries,
        email_due_at=due,
    )


def mailer_for(settings: Settings, spawn, sleep) -> Mailer:
    """The daemon's Mailer: outcomes written on the message's row."""
    return Mailer(settings, spawn, sleep, record)


def _composed(message, settings: Settings):
    """The e-mail of `message` (a row joined to its mailbox), or None when its WAV
    cannot be read (logged)."""
    mailbox = message.mailbox
    file = voicemail.message_file(message, settings)
    try:
        wav = file.read_bytes()
    except OSError as error:
        log.error("[VM] E-mail of message %d not sent: %s: %s", message.id, file, error.strerror)
        return None
    return compose(
        settings,
        mailbox.email,
        mailbox.extension.number,
        message.caller,
        message.caller_name,
        message.received,
        message.seconds,
        wav,
        voicemail.export_name(message),
    )


def email_new_message(mailer: Mailer, settings: Settings) -> Callable[[object], None]:
    """Context.new_message: the message e-mailed to its mailbox's address, if it has one."""

    def new_message(message) -> None:
        if not message.mailbox.email or not mailer.enabled:
            return
        email = _composed(message, settings)
        if email is None:
            return
        # Due from now on: a sipd stopped before the first try still sends it.
        _note(message.id, email_tries=0, email_due_at=time.time())
        mailer.queue(message.id, email, message.mailbox.extension.number)

    return new_message


def resend_pending(mailer: Mailer, settings: Settings) -> int:
    """Queue again every e-mail an earlier sipd had still to send; how many.
    Without PBX_SMTP_HOST they stay due (sent once a mail server is set)."""
    if not mailer.enabled:
        return 0
    pending = (
        VoicemailMessage.select(VoicemailMessage, Mailbox, Extension)
        .join(Mailbox)
        .join(Extension)
        .where(VoicemailMessage.email_due_at.is_null(False), VoicemailMessage.emailed_at.is_null())
        .order_by(VoicemailMessage.id)
    )
    queued = []
    for message in pending:
        email = _composed(message, settings) if message.mailbox.email else None
        if email is None:  # no address any more, or no file: nothing to send
            _note(message.id, email_due_at=None)
            continue
        mailer.queue(
            message.id,
            email,
            message.mailbox.extension.number,
            tries=message.email_tries,
            due=message.email_due_at,
            early=True,
        )
        queued.append(str(message.id))
    if queued:
        log.info(
            "[VM] E-mail of %d voicemail message(s) still to be sent from before this"
            " start: message %s",
            len(queued),
            ", ".join(queued),
        )
    return len(queued)

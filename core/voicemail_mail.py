"""Voicemail by e-mail (issue 13): each new message sent to its mailbox's address with
the WAV attached, through the SMTP server of PBX_SMTP_HOST (smtplib and email of
the standard library).

`compose` builds the message, `send` hands it to the server once (STARTTLS as
PBX_SMTP_STARTTLS says; login when PBX_SMTP_USER is set), raising `MailError`
with the cause. The daemon calls `Mailer.queue` after a message is kept: the
sending happens in a greenlet (sipd is monkey-patched: smtplib's socket waits
on the event loop), never in the call's; a server that is down is tried again
after RETRY_DELAYS, each failure logged, and after each try the outcome and the
schedule are written on the row (voicemail_message.emailed_at / email_error /
email_tries / email_due_at), so that a restarted sipd goes on with what was still
to be sent (sipd/voicemail_mail.py). The message itself is kept either way.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import time
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from core.config import Settings

log = logging.getLogger("sipd")

# Seconds before each new try: about a day of tries in all, the last after 12 h
# (a mail server down for a weekend night still gets the message in the morning).
RETRY_DELAYS = (30, 120, 600, 1800, 3600, 4 * 3600, 12 * 3600)
TIMEOUT = 30  # seconds for the server to answer each step


class MailError(Exception):
    """The message could not be handed to the server; says why."""


def compose(settings: Settings, to: str, mailbox: str, caller: str, caller_name: str,
            received: float, seconds: float, wav: bytes, filename: str) -> EmailMessage:
    message = EmailMessage()
    who = f"{caller_name} <{caller}>" if caller_name else (caller or "unknown caller")
    when = datetime.fromtimestamp(received).strftime("%Y-%m-%d %H:%M")
    message["Subject"] = f"New voicemail for {mailbox} from {who}"
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Date"] = formatdate(received, localtime=True)
    message["Message-ID"] = make_msgid(domain=settings.smtp_from.rpartition("@")[2] or None)
    whole = int(round(seconds))
    message.set_content(
        f"A new voicemail message is in mailbox {mailbox}.\n\n"
        f"From: {who}\nReceived: {when}\nLength: {whole // 60}:{whole % 60:02d}\n\n"
        f"The recording is attached ({filename}). Dial *97 to listen to it by phone.\n")
    message.add_attachment(wav, maintype="audio", subtype="wav", filename=filename)
    return message


def send(settings: Settings, message: EmailMessage) -> None:
    """Hand `message` to PBX_SMTP_HOST once; MailError with the cause if that fails."""
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT) as smtp:
            smtp.ehlo()
            if settings.smtp_starttls == "yes" or (
                    settings.smtp_starttls == "auto" and smtp.has_extn("starttls")):
                if not smtp.has_extn("starttls"):
                    raise MailError(f"{where} does not offer STARTTLS (PBX_SMTP_STARTTLS=yes)")
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password)
            smtp.send_message(message)
    except MailError:
        raise
    except smtplib.SMTPResponseException as error:
        text = error.smtp_error.decode(errors="replace") if isinstance(
            error.smtp_error, bytes) else str(error.smtp_error)
        raise MailError(f"{where} answered {error.smtp_code} {text}") from None
    except smtplib.SMTPRecipientsRefused as error:
        raise MailError(f"{where} refused {', '.join(error.recipients)}") from None
    except (smtplib.SMTPException, ssl.SSLError, OSError) as error:
        raise MailError(f"{where}: {error.__class__.__name__}: {error}") from None


class Mailer:
    """Sends each queued message in its own greenlet, trying again after RETRY_DELAYS.

    spawn / sleep are gevent's in sipd (tests pass their own, and a clock);
    `record(message_id, error, tries, due)` writes the outcome on the row after
    every try: error "" = sent; due = when the next try is, None once there is
    none (sent, or given up). What the row holds is what a restarted sipd sends
    (sipd/voicemail_mail.py `resend_pending`)."""

    def __init__(self, settings: Settings, spawn: Callable, sleep: Callable,
                 record: Callable[[int, str, int, float | None], None], delays=RETRY_DELAYS,
                 clock: Callable[[], float] = time.time):
        self.settings = settings
        self.spawn, self.sleep, self.record = spawn, sleep, record
        self.delays = tuple(delays)
        self.clock = clock

    @property
    def enabled(self) -> bool:
        return bool(self.settings.smtp_host)

    @property
    def tries(self) -> int:
        return len(self.delays) + 1

    def queue(self, message_id: int, message: EmailMessage, mailbox: str, tries: int = 0,
              due: float | None = None, early: bool = False) -> None:
        """Send `message` from try `tries` + 1 on, the next at `due` (None: now).
        early: once now as well, keeping its place (a restart: the admin may just
        have mended the mail server; a sipd that keeps restarting does not use up
        the tries)."""
        if self.enabled:
            self.spawn(self._deliver, message_id, message, mailbox, tries, due, early)

    def _deliver(self, message_id: int, message: EmailMessage, mailbox: str, tries: int = 0,
                 due: float | None = None, early: bool = False) -> bool:
        what = f"E-mail of message {message_id} (mailbox {mailbox}) to {message['To']}"
        if early and due is not None and due > self.clock():
            try:
                send(self.settings, message)
            except MailError as error:
                log.warning("[VM] %s failed (tried at start), again in %d s: %s", what,
                            due - self.clock(), error)
            else:
                log.info("[VM] %s sent", what)
                self._record(message_id, "", tries + 1, None)
                return True
        while tries < self.tries:
            if due is not None and due > self.clock():
                self.sleep(due - self.clock())
            tries += 1
            try:
                send(self.settings, message)
            except MailError as error:
                if tries >= self.tries:
                    log.error("[VM] %s given up after %d tries: %s", what, tries, error)
                    self._record(message_id, f"given up: {error}", tries, None)
                    return False
                delay = self.delays[tries - 1]
                log.warning("[VM] %s failed (try %d of %d), again in %d s: %s", what, tries,
                            self.tries, delay, error)
                due = self.clock() + delay
                self._record(message_id, str(error), tries, due)
                continue
            log.info("[VM] %s sent", what)
            self._record(message_id, "", tries, None)
            return True
        # Queued with every try made already (the row was not closed): none is due.
        self._record(message_id, f"given up after {tries} tries", tries, None)
        return False

    def _record(self, message_id: int, error: str, tries: int, due: float | None) -> None:
        try:
            self.record(message_id, error[:255], tries, due)
        except Exception as failure:  # the row's note is not worth losing the mail over
            log.warning("[VM] Could not note the e-mail of message %d: %s", message_id, failure)

"""Voicemail boxes and messages (issue 13): the operations pbxctl, the panel and
sipd's voicemail application (sipd/apps/voicemail.py) share.

A mailbox belongs to an extension (made with it, enabled, with a generated PIN;
or by `pbxctl ext voicemail N on`). Its PIN is 4 to 10 digits, kept only as a
slow hash. A message is a WAV file under PBX_VOICEMAIL_DIR, at
NUMBER/<time>-<random>.wav (the row keeps that path relative to the directory,
so the directory can move), and a row: caller, name, time, length, new/old.
Deleting a message deletes its file; deleting an extension deletes its
mailbox's rows (ON DELETE CASCADE) and `delete_files` its files.

Every write is one transaction (core/database.py `atomic`, which joins sipd's);
errors are `AccountError` with a message fit to show a person.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

from core.accounts import AccountError, get_extension
from core.config import Settings
from core.database import atomic
from core.models import Extension, Mailbox, VoicemailMessage
from core.text import N_, Text

PIN_RE = re.compile(r"^[0-9]{4,10}$")
PIN_DIGITS = 6  # a generated PIN
# pbkdf2 at 10 000 rounds: a few ms, so sipd checking a PIN on its event loop does not
# stall other calls, yet a stolen database does not give a PIN away at a glance.
# (A PIN has few digits: the real defence is the ban after three wrong ones.)
PIN_METHOD = "pbkdf2:sha256:10000"
# A message shorter than this is no message (issue 13): a caller who hung up at the beep.
MIN_SECONDS = 1.0
GREETING = "greeting.wav"  # a mailbox's own greeting, in its directory
EMAIL_RE = re.compile(r"^[^@\s<>,;\"']+@[^@\s<>,;\"']+\.[^@\s<>,;\"']+$")


def check_pin(pin) -> str:
    text = str(pin).strip() if pin is not None else ""
    if not PIN_RE.match(text):
        raise AccountError(Text(N_("a voicemail PIN is 4 to 10 digits")))
    if len(set(text)) == 1:
        raise AccountError(Text(N_("a voicemail PIN must not be one digit repeated")))
    return text


def check_email(address) -> str:
    """"" for none, else an address (no header tricks: it goes into To)."""
    text = (address or "").strip()
    if text and (len(text) > 254 or not EMAIL_RE.match(text)):
        raise AccountError(Text(N_("%(text)r is not an e-mail address"), text=text))
    return text


def generate_pin() -> str:
    while True:
        pin = "".join(secrets.choice("0123456789") for _ in range(PIN_DIGITS))
        if len(set(pin)) > 1:
            return pin


def pin_matches(mailbox: Mailbox, pin: str) -> bool:
    return bool(mailbox.pin_hash) and bool(pin) and check_password_hash(mailbox.pin_hash, pin)


def storage(settings: Settings) -> Path:
    return Path(settings.voicemail_dir)


def message_file(message: VoicemailMessage, settings: Settings) -> Path:
    return storage(settings) / message.path


# -- mailboxes ------------------------------------------------------------------------


def create_mailbox(extension: Extension, pin: str | None = None,
                   enabled: bool = True) -> tuple[Mailbox, str, bool]:
    """The mailbox of a new extension: (mailbox, PIN, generated?)."""
    pin, generated = (check_pin(pin), False) if pin else (generate_pin(), True)
    with atomic():
        mailbox = Mailbox.create(extension=extension.id, enabled=enabled,
                                 pin_hash=generate_password_hash(pin, PIN_METHOD))
    return mailbox, pin, generated


def mailbox_of(number: str) -> Mailbox | None:
    return (Mailbox.select(Mailbox, Extension).join(Extension)
            .where(Extension.number == (number or "").strip()).first())


def set_voicemail(number: str, enabled: bool, pin: str | None = None,
                  email: str | None = None,
                  language: str | None = None) -> tuple[Mailbox, str | None]:
    """Turn `number`'s mailbox on or off (making it if it has none), with its PIN,
    e-mail and prompt language when given. (mailbox, the PIN if one was generated:
    a mailbox turned on without any PIN gets one, shown once)."""
    from core.prompts import LANGUAGES  # noqa: PLC0415 - prompts needs sox only to build

    extension = get_extension(number)
    fields: dict = {"enabled": bool(enabled), "updated_at": time.time()}
    if pin is not None:
        fields["pin_hash"] = generate_password_hash(check_pin(pin), PIN_METHOD)
    if email is not None:
        fields["email"] = check_email(email)
    if language is not None:
        language = language.strip().lower()
        if language and language not in LANGUAGES:
            raise AccountError(Text(N_("prompt language must be one of %(languages)s"),
                                    languages=", ".join(LANGUAGES)))
        fields["language"] = language
    generated = None
    with atomic():
        mailbox = Mailbox.get_or_none(Mailbox.extension == extension.id)
        if mailbox is None:
            mailbox = Mailbox.create(extension=extension.id, enabled=bool(enabled))
        if enabled and not mailbox.pin_hash and "pin_hash" not in fields:
            generated = generate_pin()
            fields["pin_hash"] = generate_password_hash(generated, PIN_METHOD)
        Mailbox.update(**fields).where(Mailbox.id == mailbox.id).execute()
    return Mailbox.get_by_id(mailbox.id), generated


def mailboxes():
    """Every mailbox with its extension, by number."""
    return Mailbox.select(Mailbox, Extension).join(Extension).order_by(Extension.number)


def enabled_numbers(numbers=None) -> set[str]:
    """The extension numbers (of `numbers`, or all) whose mailbox is on."""
    query = (Extension.select(Extension.number).join(Mailbox)
             .where(Mailbox.enabled == True))  # noqa: E712 - peewee's SQL comparison
    if numbers is not None:
        query = query.where(Extension.number.in_(list(numbers)))
    return {row.number for row in query}


# -- messages -------------------------------------------------------------------------


def messages(number: str | None = None):
    """Messages, newest first within each mailbox; of `number`'s only when given."""
    query = (VoicemailMessage.select(VoicemailMessage, Mailbox, Extension)
             .join(Mailbox).join(Extension))
    if number is not None:
        query = query.where(Extension.number == number.strip())
    return query.order_by(Extension.number, VoicemailMessage.received.desc(),
                          VoicemailMessage.id.desc())


def for_listening(number: str) -> list[VoicemailMessage]:
    """What a phone plays (*97): new messages first, oldest first in each folder."""
    order = {"new": 0, "old": 1}
    found = list(messages(number))
    return sorted(found, key=lambda m: (order.get(m.folder, 2), m.received, m.id))


def counts(number: str) -> tuple[int, int]:
    """(new, old) messages in `number`'s mailbox: what the lamp says (RFC 3842)."""
    new = old = 0
    for message in (VoicemailMessage.select(VoicemailMessage.folder).join(Mailbox)
                    .join(Extension).where(Extension.number == number)):
        if message.folder == "new":
            new += 1
        else:
            old += 1
    return new, old


def new_recording_path(number: str, settings: Settings, now: float) -> Path:
    """Where the application records the next message of `number` (made on demand)."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d-%H%M%S")
    directory = storage(settings) / number
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{stamp}-{secrets.token_hex(4)}.wav"


def add_message(number: str, file: Path, seconds: float, settings: Settings,
                caller: str = "", caller_name: str = "",
                received: float | None = None) -> VoicemailMessage | None:
    """Keep the recording `file` as a new message of `number`'s mailbox; None (and the
    file removed) when it is shorter than MIN_SECONDS or the mailbox is gone."""
    mailbox = mailbox_of(number)
    if seconds < MIN_SECONDS or mailbox is None:
        Path(file).unlink(missing_ok=True)
        return None
    relative = os.path.relpath(Path(file).resolve(), storage(settings).resolve())
    with atomic():
        return VoicemailMessage.create(
            mailbox=mailbox.id, caller=(caller or "")[:64], caller_name=(caller_name or "")[:100],
            received=time.time() if received is None else received,
            seconds=round(float(seconds), 2), path=relative, folder="new",
        )


def get_message(message_id, number: str | None = None) -> VoicemailMessage:
    text = str(message_id).strip()
    message = None
    if text.isascii() and text.isdigit():
        query = (VoicemailMessage.select(VoicemailMessage, Mailbox, Extension)
                 .join(Mailbox).join(Extension).where(VoicemailMessage.id == int(text)))
        if number is not None:
            query = query.where(Extension.number == number)
        message = query.first()
    if message is None:
        raise AccountError(Text(N_("no voicemail message %(id)s"), id=text))
    return message


def mark_heard(message_id, now: float | None = None) -> VoicemailMessage:
    """A message listened to (or saved) moves to old."""
    message = get_message(message_id)
    with atomic():
        (VoicemailMessage.update(folder="old", heard_at=message.heard_at or now or time.time())
         .where(VoicemailMessage.id == message.id).execute())
    return get_message(message.id)


def delete_message(message_id, settings: Settings) -> VoicemailMessage:
    """Delete a message and its file (the row first: a file without a row is never shown)."""
    message = get_message(message_id)
    with atomic():
        message.delete_instance()
    message_file(message, settings).unlink(missing_ok=True)
    return message


def delete_files(number: str, settings: Settings) -> None:
    """The files of a deleted extension's mailbox (its rows went with it)."""
    directory = storage(settings) / number
    if number and directory.is_dir() and directory.resolve().parent == storage(settings).resolve():
        shutil.rmtree(directory, ignore_errors=True)


# -- greetings ------------------------------------------------------------------------


def greeting_file(mailbox: Mailbox, settings: Settings) -> Path | None:
    """The mailbox's own greeting (relative to PBX_VOICEMAIL_DIR, or absolute), or None."""
    if not mailbox.greeting:
        return None
    path = Path(mailbox.greeting)
    return path if path.is_absolute() else storage(settings) / path


def new_greeting_path(number: str, settings: Settings) -> Path:
    """Where a greeting is recorded before its owner keeps it (made on demand)."""
    directory = storage(settings) / number
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"greeting-{secrets.token_hex(4)}.wav"


def set_greeting(number: str, file: Path, settings: Settings) -> Mailbox:
    """`file` (a recording) becomes `number`'s greeting, NUMBER/greeting.wav."""
    mailbox = mailbox_of(number)
    if mailbox is None:
        raise AccountError(Text(N_("extension %(number)s has no mailbox"), number=number))
    relative = f"{number}/{GREETING}"
    os.replace(file, storage(settings) / relative)
    with atomic():
        (Mailbox.update(greeting=relative, updated_at=time.time())
         .where(Mailbox.id == mailbox.id).execute())
    return Mailbox.get_by_id(mailbox.id)


def upload_greeting(number: str, data: bytes, filename: str, settings: Settings) -> Mailbox:
    """An admin's upload (any audio sox reads) becomes `number`'s greeting, converted to
    what the PBX plays (core/sounds.py); core.sounds.SoundError when it is not audio,
    and then nothing changes."""
    from core import sounds  # noqa: PLC0415 - sox only where an upload is converted

    if mailbox_of(number) is None:
        raise AccountError(Text(N_("extension %(number)s has no mailbox"), number=number))
    scratch = new_greeting_path(number, settings)
    try:
        sounds.convert_upload(data, scratch, filename)
        return set_greeting(number, scratch, settings)
    finally:
        scratch.unlink(missing_ok=True)  # gone already when it became the greeting


def delete_greeting(number: str, settings: Settings) -> bool:
    """Back to the standard greeting; whether there was one of the owner's. Its file
    goes when it is under PBX_VOICEMAIL_DIR (an admin's elsewhere stays)."""
    mailbox = mailbox_of(number)
    if mailbox is None or not mailbox.greeting:
        return False
    file = greeting_file(mailbox, settings)
    with atomic():
        (Mailbox.update(greeting="", updated_at=time.time())
         .where(Mailbox.id == mailbox.id).execute())
    if file is not None and file.resolve().is_relative_to(storage(settings).resolve()):
        file.unlink(missing_ok=True)
    return True


def export_name(message: VoicemailMessage) -> str:
    stamp = datetime.fromtimestamp(message.received, UTC).strftime("%Y%m%d-%H%M%S")
    caller = re.sub(r"[^0-9A-Za-z+]", "", message.caller) or "unknown"
    return f"{message.mailbox.extension.number}-{message.id}-{stamp}-{caller}.wav"


def export_message(message_id, target: Path, settings: Settings) -> Path:
    """Copy one message's WAV to `target` (a file, or a directory to put it in)."""
    message = get_message(message_id)
    source = message_file(message, settings)
    if not source.is_file():
        raise AccountError(Text(N_("the file of voicemail message %(id)s is missing: %(path)s"),
                                id=message.id, path=str(source)))
    target = Path(target)
    if target.is_dir():
        target = target / export_name(message)
    shutil.copyfile(source, target)
    return target


def export_mailbox(number: str, directory: Path, settings: Settings) -> list[Path]:
    """Copy every message of `number`'s mailbox into `directory` (made if need be)."""
    get_extension(number)
    found = list(messages(number))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return [export_message(m.id, directory / export_name(m), settings) for m in found]

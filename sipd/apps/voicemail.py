"""Voicemail (issue 13): leave a message, or listen to one's messages, on a call the
PBX answered itself (an `Application("voicemail", target, reason)` step).

What a call is here comes from the routing step (sipd/routing/decide.py):
- reason busy | no_answer | unavailable | dnd | "" (dialled `voicemail:NUMBER`):
  the caller leaves a message in `target`'s mailbox;
- reason "check" (*97): the caller listens to its own mailbox (`target`), with its PIN;
- reason "login" (*98): any mailbox, its number and then its PIN.

Leaving: the greeting (the mailbox's own recording, else "The person at extension
1001 is on the phone / is unavailable", then "leave your message after the
tone"; # skips it), the beep, then recording until #, silence or the longest
message (PBX_VOICEMAIL_MAX_SECONDS). A recording shorter than a second (the media
endpoint leaves the trailing silence out) is no message (core/voicemail.MIN_SECONDS).
Listening: "You have N new messages", then the menu: 1 the messages (also when
no key is pressed), 0 the greeting, # the end. The messages: new ones first; after
each 1 repeats it, 7 deletes it, 9 saves it, # goes to the next. A message played
is heard (old). Three wrong PINs (or mailbox numbers, with *98: which was wrong is
never said) end the call; each counts towards the source's ban, like a wrong
SIP password (sipd/security.py Guard.auth_failed).
The greeting (0): 1 records it (after the tone, until #, silence or
GREETING_MAX_SECONDS), plays it back, then 1 keeps it, 2 plays it again, 3
records it again; shorter than a second, it is not kept. 2 plays the greeting
callers hear, 3 deletes the owner's (callers hear the standard one again), *
goes back to the menu.

The module reads top to bottom like the call (STYLE.md); what it needs of the
daemon (settings, the ban count, the lamp and e-mail after a change, the
database write lock) is `Context`, set by the daemon with `install`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from core import prompts, voicemail
from core.config import Settings, load_settings
from sipd.apps.call import CallerGone

log = logging.getLogger("sipd")

LEAVE_REASONS = ("busy", "no_answer", "unavailable", "dnd", "")
ON_THE_PHONE = ("busy", "dnd")  # greeting: "is on the phone"; otherwise "is unavailable"
PIN_TRIES = 3
SILENCE_SECONDS = 5.0
GREETING_MAX_SECONDS = 60.0
DIGIT_TIMEOUT = 5.0
BEEP = "beep"


def _write():
    from core.models import db  # noqa: PLC0415 - the daemon binds it before any call
    from sipd import dblock  # noqa: PLC0415

    return dblock.transaction(db.connection())


@dataclass
class Context:
    """What the application needs of the daemon. The defaults do nothing (tests)."""

    settings: Settings | None = None
    # A wrong PIN: (mailbox number, source host, reason), the ban count.
    auth_failed: Callable[[str, str, str], None] = lambda number, host, reason: None
    # A mailbox's messages changed (the lamp, RFC 3842): its number.
    changed: Callable[[str], None] = lambda number: None
    # A new message was kept (its e-mail): the message row.
    new_message: Callable[[object], None] = lambda message: None
    # The write transaction sipd's writes take (sipd/dblock.py).
    write: Callable[[], AbstractContextManager] = field(default=_write)

    def current_settings(self) -> Settings:
        if self.settings is None:
            self.settings = load_settings()
        return self.settings


CONTEXT = Context()


def install(context: Context) -> None:
    global CONTEXT
    CONTEXT = context


def guard_reporter(guard) -> Callable[[str, str, str], None]:
    """Context.auth_failed for sipd/security.py's Guard (which takes a source with .host)."""
    def report(number: str, host: str, reason: str) -> None:
        guard.auth_failed(number, SimpleNamespace(host=host), reason)
    return report


def run(call) -> None:
    """The application: APPS["voicemail"] (sipd/apps/__init__.py)."""
    ctx = CONTEXT
    try:
        if call.reason == "check":
            _listen(call, ctx, call.target)
        elif call.reason == "login":
            _listen(call, ctx, None)
        else:
            _leave(call, ctx, call.target)
    except CallerGone:
        return


# -- prompts --------------------------------------------------------------------------


def _say(call, ctx: Context, *names: str) -> list[Path]:
    settings = ctx.current_settings()
    return [prompts.path(name, call.language, settings) for name in names]


def _number(call, ctx: Context, digits: str) -> list[Path]:
    return prompts.number(digits, call.language, ctx.current_settings())


def _goodbye(call, ctx: Context) -> None:
    call.play(*_say(call, ctx, "vm-goodbye"), interrupt=False)
    call.hangup()


# -- leaving a message ----------------------------------------------------------------


def _greeting(call, ctx: Context, mailbox, number: str) -> list[Path]:
    own = voicemail.greeting_file(mailbox, ctx.current_settings())
    if own is not None and own.is_file():
        return [own]
    state = "vm-isonphone" if call.reason in ON_THE_PHONE else "vm-isunavail"
    return [*_say(call, ctx, "vm-theperson"), *_number(call, ctx, number),
            *_say(call, ctx, state, "vm-intro")]


def _leave(call, ctx: Context, number: str) -> None:
    settings = ctx.current_settings()
    mailbox = voicemail.mailbox_of(number)
    if mailbox is None or not mailbox.enabled:
        log.info("[VM] Call from %s to mailbox %s refused: no mailbox, or it is off",
                 call.caller, number)
        _goodbye(call, ctx)
        return
    call.language = mailbox.language or call.language
    call.play(*_greeting(call, ctx, mailbox, number), interrupt=True)  # any key: to the beep
    call.play(*_say(call, ctx, BEEP), interrupt=False)
    path = voicemail.new_recording_path(number, settings, call.now())
    received = call.now()
    recording = call.record(str(path), settings.voicemail_max_seconds,
                            silence_seconds=SILENCE_SECONDS, end_keys="#")
    # Ended by silence, the media endpoint has left the silence out already.
    spoken = recording.seconds
    if spoken < voicemail.MIN_SECONDS:
        Path(recording.path).unlink(missing_ok=True)
        log.info("[VM] Message from %s to mailbox %s not kept: %.1f s is too short"
                 " (%.1f s recorded, ended by %s)", call.caller, number, max(spoken, 0.0),
                 recording.seconds, recording.ended_by)
        if recording.ended_by != "hangup":
            _goodbye(call, ctx)
        return
    with ctx.write():
        message = voicemail.add_message(number, Path(recording.path), recording.seconds,
                                        settings, call.caller, call.caller_name, received)
    if message is None:  # the mailbox went while the caller spoke
        return
    log.info("[VM] New message %d in mailbox %s from %s, %.1f s (ended by %s)",
             message.id, number, call.caller or "unknown", message.seconds, recording.ended_by)
    ctx.changed(number)
    ctx.new_message(message)
    if recording.ended_by != "hangup":
        call.play(*_say(call, ctx, "vm-saved"), interrupt=False)
        _goodbye(call, ctx)


# -- listening ------------------------------------------------------------------------


def _wrong(call, ctx: Context, number: str, tries: int) -> None:
    log.warning("[VM] Wrong PIN for mailbox %s from %s (%s), try %d of %d",
                number or "?", call.source, call.caller or "unknown", tries, PIN_TRIES)
    ctx.auth_failed(number, call.source, "wrong voicemail PIN")


def _login(call, ctx: Context, number: str | None):
    """The mailbox once its PIN was given; None after PIN_TRIES wrong ones (hung up)."""
    for tries in range(1, PIN_TRIES + 1):
        asked = number
        if asked is None:
            key = call.play(*_say(call, ctx, "vm-login"))
            asked = _rest(call, key) if key else call.digits(
                max_digits=15, timeout=DIGIT_TIMEOUT, end="#")
        key = call.play(*_say(call, ctx, "vm-password"))
        pin = _rest(call, key) if key else call.digits(max_digits=10, timeout=DIGIT_TIMEOUT,
                                                      end="#")
        mailbox = voicemail.mailbox_of(asked) if asked else None
        if mailbox is not None and mailbox.enabled and voicemail.pin_matches(mailbox, pin):
            log.info("[VM] Mailbox %s opened from %s (%s)", asked, call.source,
                     call.caller or "unknown")
            return mailbox
        _wrong(call, ctx, asked or "", tries)
        call.play(*_say(call, ctx, "vm-incorrect"), interrupt=False)
    log.warning("[VM] %d wrong PINs from %s (%s): call ended", PIN_TRIES, call.source,
                call.caller or "unknown")
    _goodbye(call, ctx)
    return None


def _rest(call, first: str) -> str:
    """Digits typed after `first` (the key that stopped a prompt), up to #."""
    if first == "#":
        return ""
    return first + call.digits(max_digits=15, timeout=DIGIT_TIMEOUT, end="#")


def _listen(call, ctx: Context, number: str | None) -> None:
    settings = ctx.current_settings()
    mailbox = _login(call, ctx, number)
    if mailbox is None:
        return
    number = mailbox.extension.number
    call.language = mailbox.language or call.language
    new = voicemail.counts(number)[0]
    word = "vm-message" if new == 1 else "vm-messages"
    key = call.play(*_say(call, ctx, "vm-youhave"), *_number(call, ctx, str(new)),
                    *_say(call, ctx, "vm-INBOX", word))
    listened = False
    while True:
        if not key:
            key = call.play(*_say(call, ctx, "vm-menu"))
        if not key:
            key = call.digits(max_digits=1, timeout=DIGIT_TIMEOUT, end="")
        # No answer: the messages the first time (what the caller called for), then the end.
        if key == "1" or (not key and not listened):
            _messages(call, ctx, settings, number)
            listened = True
        elif key == "0":
            _greeting_menu(call, ctx, settings, number)
        elif key == "#" or not key:
            break
        key = ""
    _goodbye(call, ctx)


def _messages(call, ctx: Context, settings: Settings, number: str) -> None:
    for message in voicemail.for_listening(number):
        _one(call, ctx, settings, number, message)
    call.play(*_say(call, ctx, "vm-nomore"), interrupt=False)


def _one(call, ctx: Context, settings: Settings, number: str, message) -> None:
    """Play one message and do what the caller asks with it: 1 again, 7 delete,
    9 save, # next (and next after two prompts without an answer)."""
    unanswered = 0
    play_it = True
    while True:
        key = ""
        if play_it:
            key = call.play(str(voicemail.message_file(message, settings)))
            if message.folder == "new":
                with ctx.write():
                    message = voicemail.mark_heard(message.id, now=call.now())
                ctx.changed(number)
            play_it = False
        if not key:
            key = call.play(*_say(call, ctx, "vm-instructions"))
        if not key:
            key = call.digits(max_digits=1, timeout=DIGIT_TIMEOUT, end="")
        if key == "1":
            play_it = True
        elif key == "7":
            with ctx.write():
                voicemail.delete_message(message.id, settings)
            log.info("[VM] Message %d of mailbox %s deleted by phone", message.id, number)
            ctx.changed(number)
            call.play(*_say(call, ctx, "vm-deleted"), interrupt=False)
            return
        elif key == "9":
            call.play(*_say(call, ctx, "vm-saved"), interrupt=False)
            return
        elif key == "#":
            return
        elif not key:
            unanswered += 1
            if unanswered >= 2:
                return


# -- the greeting, recorded by phone --------------------------------------------------


def _greeting_menu(call, ctx: Context, settings: Settings, number: str) -> None:
    """1 record, 2 hear, 3 delete (the standard greeting again), * back."""
    unanswered = 0
    while unanswered < 2:
        key = call.play(*_say(call, ctx, "vm-greeting-menu"))
        if not key:
            key = call.digits(max_digits=1, timeout=DIGIT_TIMEOUT, end="")
        unanswered = 0 if key else unanswered + 1
        if key == "1":
            _record_greeting(call, ctx, settings, number)
        elif key == "2":
            call.play(*_greeting(call, ctx, voicemail.mailbox_of(number), number))
        elif key == "3":
            with ctx.write():
                deleted = voicemail.delete_greeting(number, settings)
            if deleted:
                log.info("[VM] Greeting of mailbox %s deleted by phone: the standard one again",
                         number)
            call.play(*_say(call, ctx, "vm-greeting-deleted"), interrupt=False)
        elif key == "*":
            return


def _record_greeting(call, ctx: Context, settings: Settings, number: str) -> None:
    """Record, play back, then keep (1), hear again (2) or record again (3)."""
    path = voicemail.new_greeting_path(number, settings)
    try:
        while True:
            call.play(*_say(call, ctx, "vm-rec-greeting"))  # a key: to the tone at once
            call.play(*_say(call, ctx, BEEP), interrupt=False)
            recording = call.record(str(path), GREETING_MAX_SECONDS,
                                    silence_seconds=SILENCE_SECONDS, end_keys="#")
            if recording.ended_by == "hangup":
                return
            if recording.seconds < voicemail.MIN_SECONDS:
                log.info("[VM] Greeting of mailbox %s not kept: %.1f s is too short", number,
                         max(recording.seconds, 0.0))
                call.play(*_say(call, ctx, "vm-tooshort"), interrupt=False)
                return
            choice = _review(call, ctx, path)
            if choice == "1":
                with ctx.write():
                    voicemail.set_greeting(number, path, settings)
                log.info("[VM] Greeting of mailbox %s recorded by phone, %.1f s", number,
                         recording.seconds)
                call.play(*_say(call, ctx, "vm-greeting-saved"), interrupt=False)
                return
            if choice != "3":
                log.info("[VM] Greeting of mailbox %s not kept: not accepted", number)
                return
    finally:
        path.unlink(missing_ok=True)  # kept, it was moved away


def _review(call, ctx: Context, path: Path) -> str:
    """The recording played back, then 1 keep, 2 again, 3 record again: the key, or ""
    after two prompts without an answer."""
    key = call.play(str(path))
    unanswered = 0
    while unanswered < 2:
        if not key:
            key = call.play(*_say(call, ctx, "vm-review"))
        if not key:
            key = call.digits(max_digits=1, timeout=DIGIT_TIMEOUT, end="")
        if key in ("1", "3"):
            return key
        unanswered = 0 if key else unanswered + 1
        key = call.play(str(path)) if key == "2" else ""
    return ""

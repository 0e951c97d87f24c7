"""pbxctl's commands for voicemail (issue 13 items 2 and 7):

    pbxctl ext voicemail NUMBER on|off [--pin PIN] [--email ADDRESS] [--language LANG]
    pbxctl vm list [NUMBER]              id, mailbox, caller, time, duration, new/old
    pbxctl vm export ID FILE.wav         one message's recording
    pbxctl vm export NUMBER DIRECTORY    every message of a mailbox
    pbxctl vm rm ID                      delete a message and its file
    pbxctl vm greeting NUMBER FILE       the greeting callers of the mailbox hear (any audio)
    pbxctl vm greeting NUMBER --reset    back to the standard greeting

The checks are core/voicemail.py's (shared with the panel and sipd); a refusal
is one line on stderr and exit status 1 with nothing changed, and each change
is written with its audit row in one transaction. A greeting is converted as the
panel's upload is (core/voicemail.upload_greeting), with the same audit row.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from core import voicemail
from pbxcli_common import CliError, audit_change, open_db, table


def _duration(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


def cmd_ext_voicemail(args, settings) -> int:
    on = args.state == "on"
    with open_db(settings).atomic():
        mailbox, generated = voicemail.set_voicemail(
            args.number, on, pin=args.pin, email=args.email, language=args.language)
        detail = ", ".join(filter(None, [
            args.state, "PIN set" if args.pin else "PIN generated" if generated else "",
            f"e-mail {mailbox.email or 'none'}" if args.email is not None else "",
            f"language {mailbox.language or 'default'}" if args.language is not None else "",
        ]))
        audit_change("extension.voicemail", mailbox.extension.number, detail)
    number = mailbox.extension.number
    if not on:
        print(f"Extension {number}: voicemail off (its messages are kept)")
        return 0
    email = f", messages e-mailed to {mailbox.email}" if mailbox.email else ""
    print(f"Extension {number}: voicemail on{email}")
    if generated:
        print(f"Voicemail PIN (shown once): {generated}")
    return 0


def cmd_vm_list(args, settings) -> int:
    open_db(settings)
    if args.number is not None and voicemail.mailbox_of(args.number) is None:
        raise CliError(f"extension {args.number.strip()} has no mailbox")
    found = list(voicemail.messages(args.number))
    if not found:
        print("No voicemail messages")
        return 0
    rows = [("ID", "MAILBOX", "CALLER", "TIME", "DURATION", "STATE")]
    for m in found:
        caller = f"{m.caller} ({m.caller_name})" if m.caller_name else (m.caller or "unknown")
        rows.append((str(m.id), m.mailbox.extension.number, caller,
                     datetime.fromtimestamp(m.received).strftime("%Y-%m-%d %H:%M:%S"),
                     _duration(m.seconds), m.folder))
    table(rows)
    return 0


def cmd_vm_export(args, settings) -> int:
    """ID FILE.wav (issue 13's form), or NUMBER DIRECTORY: told apart by the target,
    since a message id and a mailbox number are both digits."""
    open_db(settings)
    target = Path(args.target)
    try:
        if target.suffix.lower() == ".wav" and not target.is_dir():
            written = voicemail.export_message(args.what, target, settings)
            print(f"Message {args.what.strip()} written to {written}")
            return 0
        if target.exists() and not target.is_dir():
            raise CliError(f"{target} exists and is not a directory")
        written_all = voicemail.export_mailbox(args.what, target, settings)
    except OSError as error:
        raise CliError(f"cannot write {target}: {error.strerror}") from None
    print(f"{len(written_all)} message{'s' if len(written_all) != 1 else ''} of mailbox"
          f" {args.what.strip()} written to {target}")
    return 0


def cmd_vm_rm(args, settings) -> int:
    with open_db(settings).atomic():
        message = voicemail.get_message(args.id)
        number = message.mailbox.extension.number
        voicemail.delete_message(message.id, settings)
        audit_change("voicemail.delete", number,
                     f"message {message.id} from {message.caller or 'unknown'}")
    print(f"Message {message.id} of mailbox {number} deleted")
    return 0


def cmd_vm_greeting(args, settings) -> int:
    from core import sounds

    number = args.number.strip()
    with open_db(settings).atomic():
        if voicemail.mailbox_of(number) is None:
            raise CliError(f"extension {number} has no mailbox")
        if args.reset:
            if not voicemail.delete_greeting(number, settings):
                print(f"Mailbox {number} has no greeting of its own: callers hear the standard"
                      " one")
                return 0
            audit_change("voicemail.greeting", number, "standard greeting")
            print(f"Callers of {number}'s mailbox hear the standard greeting again")
            return 0
        source = Path(args.file)
        try:
            data = source.read_bytes()
        except OSError as error:
            raise CliError(f"{args.file}: {error.strerror or error}") from None
        try:
            voicemail.upload_greeting(number, data, source.name, settings)
        except sounds.SoundError as error:
            raise CliError(str(error)) from None
        audit_change("voicemail.greeting", number, f"uploaded {source.name}")
    print(f"Callers of {number}'s mailbox hear the greeting from {source.name}")
    return 0


def add_commands(sub, ext) -> None:
    """`ext voicemail` onto pbxctl's `ext` actions, and the `vm` noun."""
    box = ext.add_parser("voicemail", help="turn an extension's mailbox on or off")
    box.add_argument("number")
    box.add_argument("state", choices=["on", "off"])
    box.add_argument("--pin", help="4 to 10 digits (a mailbox turned on without one gets one)")
    box.add_argument("--email", help="send each new message here ('' for none)")
    box.add_argument("--language", help="the prompts' language: en, uz or ru ('' for default)")
    box.set_defaults(func=cmd_ext_voicemail)

    vm = sub.add_parser("vm", help="voicemail messages").add_subparsers(
        dest="vm_command", required=True, metavar="ACTION")
    listing = vm.add_parser("list", help="messages: id, mailbox, caller, time, duration, state")
    listing.add_argument("number", nargs="?", help="only this mailbox")
    listing.set_defaults(func=cmd_vm_list)
    export = vm.add_parser("export", help="ID FILE.wav: one message; NUMBER DIR: a whole mailbox")
    export.add_argument("what", metavar="ID|NUMBER")
    export.add_argument("target", metavar="FILE.wav|DIR")
    export.set_defaults(func=cmd_vm_export)
    remove = vm.add_parser("rm", help="delete a message and its recording")
    remove.add_argument("id")
    remove.set_defaults(func=cmd_vm_rm)
    greeting = vm.add_parser("greeting", help="a mailbox's greeting from a file, or --reset")
    greeting.add_argument("number")
    which = greeting.add_mutually_exclusive_group(required=True)
    which.add_argument("file", nargs="?", help="any audio sox reads (converted)")
    which.add_argument("--reset", action="store_true", help="back to the standard greeting")
    greeting.set_defaults(func=cmd_vm_greeting)



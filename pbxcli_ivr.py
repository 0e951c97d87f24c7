"""pbxctl's commands for what the PBX says and answers itself (issue 13 items 3, 6, 7):

    pbxctl prompts build [--force]    convert Asterisk's English prompts, speak uz/ru
    pbxctl prompts list               each prompt, language, and whether it is built or uploaded
    pbxctl moh list                   the music-on-hold library, and what plays on hold
    pbxctl moh add FILE [--name NAME] | moh rm NAME | moh default NAME
    pbxctl ivr add NAME --prompt FILE.wav --option DIGIT=DEST [--option ...] [--direct-dial]
        [--timeout SECONDS] [--on-timeout DEST] [--on-invalid DEST] [--number N]
        [--language L] [--repeats N]
    pbxctl ivr list | ivr rm NAME
    pbxctl hours add NAME --open 'mon-fri 09:00-18:00' [--open ...] [--holiday YYYY-MM-DD ...]
        --in DEST --out DEST [--number N] [--timezone ZONE]
    pbxctl hours list | hours rm NAME

A refusal is one line on stderr and exit status 1 (pbxcli.main). A module of
its own because pbxcli.py is long enough; pbxcli.build_parser adds these. Music
on hold is core/music.py's, as the panel's Sounds › Music on hold is, with the
same audit rows (moh.upload, moh.choose, moh.delete).
"""

from __future__ import annotations

import time
from pathlib import Path

from core import prompts
from pbxcli_common import CliError, audit_change, noun, open_db, table, verb

# -- prompts --------------------------------------------------------------------------------


def cmd_prompts_build(args, settings) -> int:
    try:
        written = prompts.build(force=args.force, settings=settings)
    except prompts.PromptError as error:
        raise CliError(str(error)) from None
    total = len(prompts.PROMPTS) * len(prompts.LANGUAGES)
    print(f"Prompts in {settings.prompts_dir}: {written} built, {total - written} up to date")
    return 0


def cmd_prompts_list(args, settings) -> int:
    rows = [("NAME", "LANGUAGE", "SOURCE", "FILE")]
    rows += [(name, language, state, str(file))
             for name, language, state, file in prompts.listing(settings)]
    table(rows)
    return 0


# -- music on hold --------------------------------------------------------------------------


def _music(call, *args, **kwargs):
    from core import music

    try:
        return call(*args, **kwargs)
    except music.MusicError as error:
        raise CliError(str(error)) from None


def _minutes(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


def cmd_moh_list(args, settings) -> int:
    from core import music

    with open_db(settings).atomic():  # the first look adopts the old moh.wav (core/music.py)
        entries = music.library(settings)
    rows = [("NAME", "LENGTH", "ON HOLD", "FILE")]
    rows += [(e.name, _minutes(e.seconds) if e.exists else "missing", "plays" if e.chosen else "",
              str(e.path)) for e in entries]
    table(rows)
    return 0


def cmd_moh_add(args, settings) -> int:
    from core import music

    source = Path(args.file)
    try:
        data = source.read_bytes()
    except OSError as error:
        raise CliError(f"{args.file}: {error.strerror or error}") from None
    database = open_db(settings)
    name = _music(music.add, data, source.name, settings, name=args.name)  # sox, outside
    with database.atomic():
        audit_change("moh.upload", name, source.name)
    print(f"{name} is in the library (pbxctl moh default {name} plays it to held callers)")
    return 0


def cmd_moh_rm(args, settings) -> int:
    from core import music

    with open_db(settings).atomic():
        was_playing = _music(music.delete, args.name, settings)
        audit_change("moh.delete", args.name,
                     "was playing; the default plays now" if was_playing else "")
    tail = ": it was playing on hold, held callers hear the default music now" if was_playing \
        else ""
    print(f"{args.name} deleted{tail}")
    return 0


def cmd_moh_default(args, settings) -> int:
    from core import music

    with open_db(settings).atomic():
        _music(music.choose, args.name, settings)
        audit_change("moh.choose", args.name)
    what = "the default music" if args.name == music.DEFAULT else args.name
    print(f"Held callers hear {what} from the next hold on")
    return 0


# -- IVR menus ------------------------------------------------------------------------------


def _ivr_detail(menu) -> str:
    from core import ivr

    return ivr.describe_ivr(menu)


def cmd_ivr_add(args, settings) -> int:
    from core import ivr

    source = Path(args.prompt)
    try:
        data = source.read_bytes()
    except OSError as error:
        raise CliError(f"{args.prompt}: {error.strerror or error}") from None
    with open_db(settings).atomic():
        menu = ivr.create_ivr(
            args.name, (data, source.name), ivr.parse_options(args.option),
            direct_dial=args.direct_dial, timeout=args.timeout, repeats=args.repeats,
            on_timeout=args.on_timeout, on_invalid=args.on_invalid, number=args.number,
            language=args.language, settings=settings)
        audit_change("ivr.create", menu.name, _ivr_detail(menu))
    dial = f", dial {menu.number}" if menu.number else ""
    print(f"IVR menu {menu.name} created (destination ivr:{menu.name}{dial}): {_ivr_detail(menu)}")
    return 0


def cmd_ivr_list(args, settings) -> int:
    from core import ivr

    open_db(settings)
    found = ivr.list_ivrs()
    if not found:
        print("No IVR menus yet (pbxctl ivr add NAME --prompt FILE.wav --option 1=1001)")
        return 0
    rows = [("NAME", "NUMBER", "LANGUAGE", "KEYS", "TIMEOUT", "ON TIMEOUT", "ON INVALID",
             "DIRECT DIAL")]
    for menu in found:
        keys = " ".join(f"{d}={dest}" for d, dest in ivr.options_of(menu).items())
        rows.append((menu.name, menu.number or "-", menu.language, keys or "-",
                     f"{menu.timeout} s x{menu.repeats + 1}", menu.on_timeout or "goodbye",
                     menu.on_invalid or "goodbye", "yes" if menu.direct_dial else "no"))
    table(rows)
    return 0


def cmd_ivr_rm(args, settings) -> int:
    from core import ivr

    with open_db(settings).atomic():
        menu = ivr.delete_ivr(args.name, settings)
        audit_change("ivr.delete", menu.name, _ivr_detail_gone(menu))
    print(f"IVR menu {menu.name} deleted")
    return 0


def _ivr_detail_gone(menu) -> str:
    return f"number {menu.number or 'none'}, prompt {menu.prompt}"


# -- business hours -------------------------------------------------------------------------


def _hours_detail(schedule, settings) -> str:
    from core import ivr

    return ivr.describe_schedule(schedule, settings)


def cmd_hours_add(args, settings) -> int:
    from core import ivr

    with open_db(settings).atomic():
        schedule = ivr.create_schedule(
            args.name, args.open, args.in_destination, args.out_destination,
            holidays=args.holiday or [], number=args.number, timezone=args.timezone)
        audit_change("hours.create", schedule.name, _hours_detail(schedule, settings))
    state = "open" if ivr.is_open(schedule, time.time(), settings) else "closed"
    print(f"Business hours {schedule.name} created (destination hours:{schedule.name}),"
          f" {state} now: {_hours_detail(schedule, settings)}")
    return 0


def cmd_hours_list(args, settings) -> int:
    from core import ivr

    open_db(settings)
    found = ivr.list_schedules()
    if not found:
        print("No business hours yet (pbxctl hours add NAME --open 'mon-fri 09:00-18:00'"
              " --in DEST --out DEST)")
        return 0
    now = time.time()
    rows = [("NAME", "NUMBER", "OPEN", "HOLIDAYS", "TIMEZONE", "IN", "OUT", "NOW")]
    for s in found:
        rows.append((s.name, s.number or "-", "; ".join(ivr.rules_of(s)),
                     " ".join(ivr.holidays_of(s)) or "-", s.timezone or settings.timezone,
                     s.in_destination, s.out_destination,
                     "open" if ivr.is_open(s, now, settings) else "closed"))
    table(rows)
    return 0


def cmd_hours_rm(args, settings) -> int:
    from core import ivr

    with open_db(settings).atomic():
        schedule = ivr.delete_schedule(args.name)
        audit_change("hours.delete", schedule.name,
                     f"in {schedule.in_destination}, out {schedule.out_destination}")
    print(f"Business hours {schedule.name} deleted")
    return 0


def add_commands(sub) -> None:
    menus = noun(sub, "ivr", "IVR menus: press 1 for sales...")
    add = verb(menus, "add", cmd_ivr_add, "add a menu", "name:its name (destination ivr:NAME)")
    add.add_argument("--prompt", required=True, metavar="FILE.wav",
                     help="the menu's recording (any audio sox reads)")
    add.add_argument("--option", action="append", default=[], metavar="DIGIT=DEST",
                     help="a key (0-9, *, #) and its destination; repeat for each")
    add.add_argument("--direct-dial", action="store_true",
                     help="callers may dial an extension's number instead of a key")
    add.add_argument("--timeout", default="5", metavar="SECONDS",
                     help="seconds to wait for a key (default 5)")
    add.add_argument("--repeats", default="2", metavar="N",
                     help="times the menu is said again after no key or a wrong key (default 2)")
    add.add_argument("--on-timeout", default="", metavar="DEST",
                     help="where a caller who presses nothing goes (default: goodbye)")
    add.add_argument("--on-invalid", default="", metavar="DEST",
                     help="where a caller who presses wrong keys goes (default: goodbye)")
    add.add_argument("--number", default=None, metavar="N", help="a number that dials it")
    add.add_argument("--language", default="en", metavar="L",
                     help="the language of the PBX's own prompts in it: en, uz or ru")
    verb(menus, "list", cmd_ivr_list, "list the menus")
    verb(menus, "rm", cmd_ivr_rm, "delete a menu (refused while something leads to it)", "name")

    schedules = noun(sub, "hours", "business hours: open and closed destinations")
    add = verb(schedules, "add", cmd_hours_add, "add business hours",
               "name:their name (destination hours:NAME)")
    add.add_argument("--open", action="append", required=True, metavar="'DAYS HH:MM-HH:MM'",
                     help="when open, e.g. 'mon-fri 09:00-18:00'; repeat for each")
    add.add_argument("--holiday", action="extend", nargs="+", metavar="YYYY-MM-DD",
                     help="days closed all day")
    add.add_argument("--in", dest="in_destination", required=True, metavar="DEST",
                     help="where calls go while open")
    add.add_argument("--out", dest="out_destination", required=True, metavar="DEST",
                     help="where calls go while closed")
    add.add_argument("--number", default=None, metavar="N", help="a number that dials them")
    add.add_argument("--timezone", default="", metavar="ZONE",
                     help="their time zone (default PBX_TIMEZONE)")
    verb(schedules, "list", cmd_hours_list, "list business hours, open or closed now")
    verb(schedules, "rm", cmd_hours_rm, "delete business hours (refused while in use)", "name")

    moh = noun(sub, "moh", "music on hold: the library, and what held callers hear")
    verb(moh, "list", cmd_moh_list, "the library: length, and which plays on hold")
    add = verb(moh, "add", cmd_moh_add, "convert a file into the library",
               "file:any WAV, FLAC, OGG or MP3 sox reads")
    add.add_argument("--name", help="its name in the library (default: made from the file's)")
    verb(moh, "rm", cmd_moh_rm, "delete music (the default plays if it was playing)", "name")
    verb(moh, "default", cmd_moh_default, "what held callers hear from the next hold on",
         "name:a name in the library, or 'default' for the shipped tune")

    prompt = sub.add_parser("prompts", help="the spoken prompts (built at install)")
    actions = prompt.add_subparsers(dest="prompts_command", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="build the prompts of every language")
    build.add_argument("--force", action="store_true", help="rebuild those already built")
    build.set_defaults(func=cmd_prompts_build)
    actions.add_parser("list", help="prompts: built, uploaded or missing").set_defaults(
        func=cmd_prompts_list
    )

"""IVR menus and business hours (issue 13 item 3): the operations pbxctl and the
panel share; sipd reads the rows when a call comes (sipd/routing/directory.py)
and plays a menu with sipd/apps/ivr.py.

A menu is a name (the destination `ivr:NAME`), a recording (an upload of any
audio sox reads, converted by core/sounds.py to PBX_SOUNDS_DIR/ivr/NAME.wav;
anything else is refused in one line), its keys (0-9, * and #, each to a
destination), what a caller who presses nothing or a wrong key gets after
`repeats` more tries (on_timeout / on_invalid; "" = goodbye and hang up), the
prompts' language, and optionally a number that dials it and direct dial (the
caller may dial an extension's number instead of a key).

Business hours are a name (`hours:NAME`), opening rules and holidays
(core/hours.py), the destination while open and the one while closed, a time
zone ("" = PBX_TIMEZONE), optionally a number.

Deleting a menu or schedule that something still leads to (a forward, a group's
fallback, an inbound route, a key or timeout of a menu, business hours) is
refused, naming each: unlike an extension's number, which can be taken again by
someone else and so has its references cleared (core/groups.clear_references),
a menu is usually what the office number answers with, and clearing that route
would leave the number dead without anyone having decided it. The admin points
those elsewhere first and deletes then.

Every write checks everything first and is one transaction (core/database.py
`atomic`); errors are `AccountError` with a message fit to show a person. The
audit row is the caller's (pbxctl, the panel), written in the same transaction.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from core import destinations, hours
from core.accounts import AccountError
from core.config import Settings, load_settings
from core.database import atomic
from core.models import (
    Extension,
    InboundRoute,
    Ivr,
    IvrOption,
    RingGroup,
    Schedule,
    ScheduleHoliday,
    ScheduleRule,
)
from core.text import N_, Text

DIGITS = "0123456789*#"
LANGUAGES = Ivr.LANGUAGES
TIMEOUT = (1, 60)  # seconds to wait for a key
REPEATS = (0, 5)  # times the menu is said again after a timeout or a wrong key
DEFAULT_TIMEOUT = 5
DEFAULT_REPEATS = 2
PROMPT_DIR = "ivr"  # under PBX_SOUNDS_DIR
OPTION_RE = re.compile(r"^\s*([0-9*#])\s*=\s*(.+?)\s*$")


def _settings(settings: Settings | None) -> Settings:
    return settings if settings is not None else load_settings()


# -- checks (the panel's forms use them too) ----------------------------------------------


def check_name(value, kind: str = "ivr") -> str:
    name = (value or "").strip().lower()
    if not destinations.NAME_RE.match(name):
        raise AccountError(Text(N_("a name is 1 to 32 letters, digits, - or _, got %(text)r"),
                                text=value or ""))
    return name


def check_digit(value) -> str:
    digit = (value or "").strip()
    if len(digit) != 1 or digit not in DIGITS:
        raise AccountError(Text(N_("a menu key is one of 0-9, * or #, got %(text)r"),
                                text=value or ""))
    return digit


def check_language(value) -> str:
    language = (value or "en").strip().lower()
    if language not in LANGUAGES:
        raise AccountError(Text(N_("prompt language must be one of %(languages)s"),
                                languages=", ".join(LANGUAGES)))
    return language


def _whole(value, bounds: tuple[int, int], message: str) -> int:
    text = str(value).strip() if value is not None else ""
    low, high = bounds
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise AccountError(Text(message, low=low, high=high, text=text))
    return int(text)


def check_timeout(value) -> int:
    return _whole(value, TIMEOUT,
                  N_("the menu timeout must be %(low)s to %(high)s seconds, got %(text)r"))


def check_repeats(value) -> int:
    return _whole(value, REPEATS,
                  N_("repeats must be %(low)s to %(high)s, got %(text)r"))


def check_destination(text, own: str = "") -> str:
    """`text` as stored ("" for none) if it leads somewhere that exists; `own`: the
    menu being written, which may lead to itself (its key 0 says it again)."""
    try:
        destination = destinations.parse(text or "")
        if own and destination is not None and str(destination) == own:
            return own
        return destinations.check(text or "")
    except destinations.DestinationError as error:
        raise AccountError(error.args[0]) from None


def check_number(value, own: str = "") -> str | None:
    """None for no number; else a number no extension, group, other menu or schedule
    has. `own`: the destination (ivr:NAME, hours:NAME) it already belongs to."""
    number = (value or "").strip()
    if not number:
        return None
    if not destinations.NUMBER_RE.match(number):
        raise AccountError(Text(N_("number %(number)r must be 2 to 15 digits"), number=number))
    if Extension.by_number(number) is not None:
        raise AccountError(Text(N_("%(number)s is an extension"), number=number))
    if RingGroup.by_number(number) is not None:
        raise AccountError(Text(N_("%(number)s is a ring group"), number=number))
    taken = number_owner(number)
    if taken is not None and taken != own:
        raise AccountError(Text(N_("%(number)s is the number of %(owner)s"),
                                number=number, owner=taken))
    return number


def number_owner(number: str) -> str | None:
    """The destination (ivr:NAME or hours:NAME) whose number `number` is, or None."""
    menu = Ivr.get_or_none(Ivr.number == number)
    if menu is not None:
        return f"{destinations.IVR}{menu.name}"
    schedule = Schedule.get_or_none(Schedule.number == number)
    if schedule is not None:
        return f"{destinations.HOURS}{schedule.name}"
    return None


def parse_options(items) -> dict[str, str]:
    """["1=1001", "2=voicemail:1002"] (pbxctl's --option) -> {"1": "1001", ...}, unchecked."""
    options: dict[str, str] = {}
    for item in items or ():
        match = OPTION_RE.match(item or "")
        if not match:
            raise AccountError(Text(N_("a menu option is KEY=DESTINATION (e.g. 1=1001),"
                                       " got %(text)r"), text=item or ""))
        if match.group(1) in options:
            raise AccountError(Text(N_("key %(digit)s is given twice"), digit=match.group(1)))
        options[match.group(1)] = match.group(2)
    return options


def check_options(options: dict[str, str], own: str = "") -> dict[str, str]:
    checked = {}
    for digit, destination in options.items():
        digit = check_digit(digit)
        if digit in checked:
            raise AccountError(Text(N_("key %(digit)s is given twice"), digit=digit))
        checked[digit] = check_destination(destination, own)
        if not checked[digit]:
            raise AccountError(Text(N_("key %(digit)s leads nowhere"), digit=digit))
    return checked


# -- menus --------------------------------------------------------------------------------


def prompt_file(menu: Ivr, settings: Settings | None = None) -> Path:
    return Path(_settings(settings).sounds_dir) / menu.prompt


def _write_prompt(name: str, prompt: tuple[bytes, str], settings: Settings) -> str:
    """Convert the upload (data, filename) into the sounds directory; its relative path."""
    from core import sounds  # noqa: PLC0415 - sox is needed only for an upload

    data, filename = prompt
    relative = f"{PROMPT_DIR}/{name}.wav"
    try:
        sounds.convert_upload(data, Path(settings.sounds_dir) / relative, filename)
    except sounds.SoundError as error:
        raise AccountError(Text(N_("the menu prompt is refused: %(reason)s"),
                                reason=str(error))) from None
    return relative


def _write_options(menu: Ivr, options: dict[str, str]) -> None:
    IvrOption.delete().where(IvrOption.ivr == menu.id).execute()
    if options:
        IvrOption.insert_many([{"ivr": menu.id, "digit": d, "destination": dest}
                               for d, dest in sorted(options.items())]).execute()


def create_ivr(name: str, prompt: tuple[bytes, str], options: dict[str, str], *,
               direct_dial: bool = False, timeout=DEFAULT_TIMEOUT, repeats=DEFAULT_REPEATS,
               on_timeout: str = "", on_invalid: str = "", number: str | None = None,
               language: str = "en", settings: Settings | None = None) -> Ivr:
    """A new menu; `prompt` is the uploaded recording as (bytes, file name)."""
    settings = _settings(settings)
    name = check_name(name)
    fields = dict(direct_dial=bool(direct_dial), timeout=check_timeout(timeout),
                  repeats=check_repeats(repeats), language=check_language(language))
    if not options and not direct_dial:
        raise AccountError(Text(N_("a menu needs at least one option (KEY=DESTINATION)")))
    with atomic():
        if Ivr.get_or_none(Ivr.name == name) is not None:
            raise AccountError(Text(N_("IVR menu %(name)s already exists"), name=name))
        fields["number"] = check_number(number, f"{destinations.IVR}{name}")
        own = f"{destinations.IVR}{name}"
        fields["on_timeout"] = check_destination(on_timeout, own)
        fields["on_invalid"] = check_destination(on_invalid, own)
        checked = check_options(options, own)
        fields["prompt"] = _write_prompt(name, prompt, settings)
        try:
            menu = Ivr.create(name=name, **fields)
            _write_options(menu, checked)
        except Exception:
            (Path(settings.sounds_dir) / fields["prompt"]).unlink(missing_ok=True)
            raise
    return get_ivr(name)


def update_ivr(name: str, *, prompt: tuple[bytes, str] | None = None,
               options: dict[str, str] | None = None, direct_dial: bool | None = None,
               timeout=None, repeats=None, on_timeout: str | None = None,
               on_invalid: str | None = None, number: str | None = None,
               language: str | None = None, settings: Settings | None = None) -> Ivr:
    """Change what is given (None: unchanged; number "" removes it); `options` replaces
    all keys; a new `prompt` replaces the recording."""
    settings = _settings(settings)
    fields: dict = {"updated_at": time.time()}
    if direct_dial is not None:
        fields["direct_dial"] = bool(direct_dial)
    if timeout is not None:
        fields["timeout"] = check_timeout(timeout)
    if repeats is not None:
        fields["repeats"] = check_repeats(repeats)
    if language is not None:
        fields["language"] = check_language(language)
    with atomic():
        menu = get_ivr(name)
        if number is not None:
            fields["number"] = check_number(number, f"{destinations.IVR}{menu.name}")
        own = f"{destinations.IVR}{menu.name}"
        if on_timeout is not None:
            fields["on_timeout"] = check_destination(on_timeout, own)
        if on_invalid is not None:
            fields["on_invalid"] = check_destination(on_invalid, own)
        checked = check_options(options, own) if options is not None else None
        if checked is not None and not checked and not fields.get("direct_dial",
                                                                   menu.direct_dial):
            raise AccountError(Text(N_("a menu needs at least one option (KEY=DESTINATION)")))
        if prompt is not None:
            fields["prompt"] = _write_prompt(menu.name, prompt, settings)
        Ivr.update(**fields).where(Ivr.id == menu.id).execute()
        if checked is not None:
            _write_options(menu, checked)
    return get_ivr(menu.name)


def get_ivr(name: str) -> Ivr:
    menu = Ivr.get_or_none(Ivr.name == (name or "").strip().lower())
    if menu is None:
        raise AccountError(Text(N_("no IVR menu %(name)s"), name=(name or "").strip()))
    return menu


def list_ivrs() -> list[Ivr]:
    return list(Ivr.select().order_by(Ivr.name))


def options_of(menu: Ivr) -> dict[str, str]:
    """The menu's keys in key order (0-9, *, #)."""
    found = {o.digit: o.destination
             for o in IvrOption.select().where(IvrOption.ivr == menu.id)}
    return {d: found[d] for d in DIGITS if d in found}


def describe_ivr(menu: Ivr) -> str:
    """A menu's settings in one line, as the audit log and pbxctl say them."""
    keys = ", ".join(f"{d}={dest}" for d, dest in options_of(menu).items()) or "none"
    return (f"keys {keys}; number {menu.number or 'none'}; language {menu.language};"
            f" timeout {menu.timeout} s, {menu.repeats} repeats,"
            f" then {menu.on_timeout or 'goodbye'};"
            f" wrong key then {menu.on_invalid or 'goodbye'}"
            + ("; direct dial" if menu.direct_dial else ""))


def delete_ivr(name: str, settings: Settings | None = None) -> Ivr:
    """Delete a menu and its recording; refused while something leads to it."""
    settings = _settings(settings)
    with atomic():
        menu = get_ivr(name)
        users = used_by(f"{destinations.IVR}{menu.name}", but=menu)
        if users:
            raise AccountError(Text(N_("IVR menu %(name)s is in use (%(users)s): point those"
                                       " elsewhere first"), name=menu.name,
                                    users=", ".join(users)))
        menu.delete_instance()  # its options go with it (ON DELETE CASCADE)
    if menu.prompt:
        prompt_file(menu, settings).unlink(missing_ok=True)
    return menu


# -- business hours -----------------------------------------------------------------------


def check_timezone(value) -> str:
    name = (value or "").strip()
    if name:
        try:
            hours.zone(name)
        except hours.HoursError as error:
            raise AccountError(error.args[0]) from None
    return name


def check_rules(rules) -> list[str]:
    """The rules as core/hours.py writes them, in the order given."""
    texts = [r for r in (rules or ()) if (r or "").strip()]
    if not texts:
        raise AccountError(Text(N_("business hours need at least one opening rule,"
                                   " e.g. 'mon-fri 09:00-18:00'")))
    try:
        return [str(hours.parse_rule(text)) for text in texts]
    except hours.HoursError as error:
        raise AccountError(error.args[0]) from None


def check_holidays(days) -> list[str]:
    try:
        return sorted({hours.parse_holiday(d).isoformat() for d in (days or ()) if d.strip()})
    except hours.HoursError as error:
        raise AccountError(error.args[0]) from None


def _schedule_destination(text, name: str) -> str:
    own = f"{destinations.HOURS}{name}"
    checked = check_destination(text, own)
    if not checked:
        raise AccountError(Text(N_("business hours need a destination for open and one for"
                                   " closed")))
    if checked == own:
        raise AccountError(Text(N_("business hours %(name)s cannot lead to themselves"),
                                name=name))
    return checked


def _write_rules(schedule: Schedule, rules: list[str], holidays: list[str]) -> None:
    ScheduleRule.delete().where(ScheduleRule.schedule == schedule.id).execute()
    ScheduleHoliday.delete().where(ScheduleHoliday.schedule == schedule.id).execute()
    ScheduleRule.insert_many([{"schedule": schedule.id, "position": n, "rule": r}
                              for n, r in enumerate(rules)]).execute()
    if holidays:
        ScheduleHoliday.insert_many([{"schedule": schedule.id, "day": d}
                                     for d in holidays]).execute()


def create_schedule(name: str, rules: list[str], in_destination: str, out_destination: str,
                    holidays: list[str] = (), number: str | None = None,
                    timezone: str = "") -> Schedule:
    name = check_name(name)
    rules = check_rules(rules)
    holidays = check_holidays(holidays)
    timezone = check_timezone(timezone)
    with atomic():
        if Schedule.get_or_none(Schedule.name == name) is not None:
            raise AccountError(Text(N_("business hours %(name)s already exist"), name=name))
        fields = dict(
            number=check_number(number, f"{destinations.HOURS}{name}"),
            in_destination=_schedule_destination(in_destination, name),
            out_destination=_schedule_destination(out_destination, name),
            timezone=timezone)
        schedule = Schedule.create(name=name, **fields)
        _write_rules(schedule, rules, holidays)
    return get_schedule(name)


def update_schedule(name: str, *, rules: list[str] | None = None,
                    holidays: list[str] | None = None, in_destination: str | None = None,
                    out_destination: str | None = None, number: str | None = None,
                    timezone: str | None = None) -> Schedule:
    """Change what is given (None: unchanged; number "" removes it)."""
    fields: dict = {"updated_at": time.time()}
    if timezone is not None:
        fields["timezone"] = check_timezone(timezone)
    with atomic():
        schedule = get_schedule(name)
        if number is not None:
            fields["number"] = check_number(number, f"{destinations.HOURS}{schedule.name}")
        if in_destination is not None:
            fields["in_destination"] = _schedule_destination(in_destination, schedule.name)
        if out_destination is not None:
            fields["out_destination"] = _schedule_destination(out_destination, schedule.name)
        new_rules = check_rules(rules) if rules is not None else rules_of(schedule)
        new_holidays = check_holidays(holidays) if holidays is not None else holidays_of(schedule)
        Schedule.update(**fields).where(Schedule.id == schedule.id).execute()
        _write_rules(schedule, new_rules, new_holidays)
    return get_schedule(schedule.name)


def get_schedule(name: str) -> Schedule:
    schedule = Schedule.get_or_none(Schedule.name == (name or "").strip().lower())
    if schedule is None:
        raise AccountError(Text(N_("no business hours %(name)s"), name=(name or "").strip()))
    return schedule


def list_schedules() -> list[Schedule]:
    return list(Schedule.select().order_by(Schedule.name))


def rules_of(schedule: Schedule) -> list[str]:
    return [r.rule for r in ScheduleRule.select().where(ScheduleRule.schedule == schedule.id)
            .order_by(ScheduleRule.position, ScheduleRule.id)]


def holidays_of(schedule: Schedule) -> list[str]:
    return [h.day for h in ScheduleHoliday.select()
            .where(ScheduleHoliday.schedule == schedule.id).order_by(ScheduleHoliday.day)]


def hours_of(schedule: Schedule, settings: Settings | None = None) -> hours.Schedule:
    """The schedule as core/hours.py judges it (its zone, else PBX_TIMEZONE)."""
    timezone = schedule.timezone or _settings(settings).timezone
    return hours.parse(rules_of(schedule), holidays_of(schedule), timezone)


def is_open(schedule: Schedule, now: float | None = None,
            settings: Settings | None = None) -> bool:
    return hours.is_open(hours_of(schedule, settings), time.time() if now is None else now)


def describe_schedule(schedule: Schedule, settings: Settings | None = None) -> str:
    """Business hours in one line, as the audit log and pbxctl say them."""
    holidays = ", ".join(holidays_of(schedule)) or "none"
    timezone = schedule.timezone or _settings(settings).timezone
    return (f"open {'; '.join(rules_of(schedule))} ({timezone});"
            f" holidays {holidays}; in {schedule.in_destination}, out {schedule.out_destination};"
            f" number {schedule.number or 'none'}")


def delete_schedule(name: str) -> Schedule:
    """Delete business hours; refused while something leads to them."""
    with atomic():
        schedule = get_schedule(name)
        users = used_by(f"{destinations.HOURS}{schedule.name}", but=schedule)
        if users:
            raise AccountError(Text(N_("business hours %(name)s are in use (%(users)s): point"
                                       " those elsewhere first"), name=schedule.name,
                                    users=", ".join(users)))
        schedule.delete_instance()  # rules and holidays go with it (ON DELETE CASCADE)
    return schedule


# -- what leads where ---------------------------------------------------------------------


def used_by(destination: str, but=None) -> list[Text]:
    """Everything that leads to `destination` (as stored), in words; `but`: the menu or
    schedule itself (a menu whose key 0 says it again does not keep it alive)."""
    found: list[Text] = []
    for field, label in (("forward_always", N_("forward always of %(owner)s")),
                         ("forward_busy", N_("forward on busy of %(owner)s")),
                         ("forward_no_answer", N_("forward on no answer of %(owner)s")),
                         ("forward_unavailable", N_("forward when unavailable of %(owner)s"))):
        column = getattr(Extension, field)
        for (owner,) in (Extension.select(Extension.number).where(column == destination)
                         .order_by(Extension.number).tuples()):
            found.append(Text(label, owner=owner))
    for (owner,) in (RingGroup.select(RingGroup.number)
                     .where(RingGroup.fallback == destination).order_by(RingGroup.number)
                     .tuples()):
        found.append(Text(N_("fallback of ring group %(owner)s"), owner=owner))
    for (did,) in (InboundRoute.select(InboundRoute.did)
                   .where(InboundRoute.destination == destination).order_by(InboundRoute.did)
                   .tuples()):
        found.append(Text(N_("inbound route of DID %(did)s"), did=did))
    own_menu = but.id if isinstance(but, Ivr) else None
    own_schedule = but.id if isinstance(but, Schedule) else None
    for option in (IvrOption.select(IvrOption, Ivr).join(Ivr)
                   .where(IvrOption.destination == destination).order_by(Ivr.name)):
        if option.ivr.id != own_menu:
            found.append(Text(N_("key %(digit)s of IVR menu %(owner)s"), digit=option.digit,
                              owner=option.ivr.name))
    for menu in (Ivr.select().where((Ivr.on_timeout == destination)
                                    | (Ivr.on_invalid == destination)).order_by(Ivr.name)):
        if menu.id != own_menu:
            found.append(Text(N_("timeout or wrong key of IVR menu %(owner)s"),
                              owner=menu.name))
    for schedule in (Schedule.select().where((Schedule.in_destination == destination)
                                             | (Schedule.out_destination == destination))
                     .order_by(Schedule.name)):
        if schedule.id != own_schedule:
            found.append(Text(N_("business hours %(owner)s"), owner=schedule.name))
    return found

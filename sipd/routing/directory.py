"""What the routing step knows about the targets of a call (sipd/routing/decide.py).

`decide` asks a `Directory` and nothing else: the settings of an extension or
a ring group, whether an extension's phones can be rung now, and how many calls
it is in. `StoreDirectory` answers from the database (a few statements per
call, each result kept for the rest of that call's decision) and the B2BUA's
own count of live calls; `TableDirectory` answers from plain dicts, for the
table tests (tests/unit/test_routing.py). Neither writes anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Protocol

from core import hours


@dataclass(frozen=True)
class ExtensionView:
    """An extension's routing settings (core/models.py Extension; forwards as
    core/destinations.py names them, "" for none)."""

    number: str
    name: str = ""
    enabled: bool = True
    dnd: bool = False
    forward_always: str = ""
    forward_busy: str = ""
    forward_no_answer: str = ""
    forward_no_answer_after: int = 20  # seconds of ringing before forward_no_answer
    forward_unavailable: str = ""
    max_calls: int = 4
    # Calls to the outside world (issue 12): what it may dial (core.models
    # OUTBOUND_PERMISSIONS) and the caller ID sent for it ("" = the route's or trunk's).
    outbound_permission: str = "national"
    outbound_caller_id: str = ""
    # Its mailbox is on (core/models.py Mailbox): where a busy, unanswered,
    # unavailable or DND call goes when no forward of that kind is set.
    voicemail: bool = False


@dataclass(frozen=True)
class GroupView:
    """A ring group (core/models.py RingGroup), its members in hunt order."""

    number: str
    name: str = ""
    strategy: str = "ringall"  # ringall | hunt
    ring_time: int = 30
    member_time: int = 15
    members: tuple[str, ...] = ()
    fallback: str = ""
    # A member already in a call is skipped (core/models.py RingGroup.skip_busy); off,
    # it is rung too unless at its call limit, and its phone's call waiting decides.
    skip_busy: bool = True


@dataclass(frozen=True)
class TrunkView:
    """A trunk of an outbound route, as the routing step needs it (core/models.py Trunk)."""

    name: str
    caller_id: str = ""


@dataclass(frozen=True)
class RouteView:
    """An outbound route (core/models.py OutboundRoute): its dial patterns in order
    and its enabled trunks in the order they are tried."""

    name: str
    patterns: tuple[str, ...] = ()
    trunks: tuple[TrunkView, ...] = ()
    caller_id: str = ""
    emergency: bool = False
    record: bool = False  # the calls it sends out are recorded (sipd/recording.py)


@dataclass(frozen=True)
class PolicyView:
    """The toll-fraud policy (core/models.py OutboundPolicy) the routing step uses."""

    home_country: str = ""
    allowed_countries: str = ""


@dataclass(frozen=True)
class ScheduleView:
    """Business hours (core/models.py Schedule): where calls go while open and closed."""

    name: str
    in_destination: str
    out_destination: str
    hours: hours.Schedule


class Directory(Protocol):
    def extension(self, number: str) -> ExtensionView | None:
        """The extension `number`, or None."""

    def group(self, number: str) -> GroupView | None:
        """The ring group `number`, or None."""

    def reachable(self, number: str) -> bool:
        """Whether the extension has a live binding not marked unreachable
        (sipd/qualifier.py): something a call can ring now."""

    def registered(self, number: str) -> bool:
        """Whether it has a live binding at all (to say why a call could not ring it:
        not registered, or its phones do not answer)."""

    def in_calls(self, number: str) -> int:
        """How many live calls the extension is in, as caller or callee."""

    def routes(self) -> tuple[RouteView, ...]:
        """The outbound routes, in the order they are tried (first match wins)."""

    def policy(self) -> PolicyView:
        """The toll-fraud policy: the home country and the other allowed countries."""

    def ivr(self, name: str) -> bool:
        """Whether there is an IVR menu `name` (core/models.py Ivr)."""

    def schedule(self, name: str) -> ScheduleView | None:
        """The business hours `name`, or None."""

    def numbered(self, number: str) -> str:
        """The menu or business hours whose number `number` is, as a destination
        (ivr:NAME, hours:NAME), or ""."""

    # Whether the B2BUA carries out Application steps (voicemail, *97/*98).
    applications: bool


# -- from the database -------------------------------------------------------------------

_EXTENSION_COLUMNS = (
    "e.number, e.name, e.enabled, e.dnd, e.forward_always, e.forward_busy,"
    " e.forward_no_answer, e.forward_no_answer_after, e.forward_unavailable, e.max_calls,"
    " e.outbound_permission, e.outbound_caller_id,"
    " (SELECT count(*) FROM binding b WHERE b.extension_id = e.id AND b.expires_at > ?),"
    " (SELECT count(*) FROM binding b WHERE b.extension_id = e.id AND b.expires_at > ?"
    "  AND b.unreachable_since IS NULL),"
    " (SELECT count(*) FROM mailbox v WHERE v.extension_id = e.id AND v.enabled)"
)
_WIDTH = 15  # the columns above


def _view(row, applications: bool = True) -> tuple[ExtensionView, int, int]:
    """(extension, live bindings, reachable bindings) from _EXTENSION_COLUMNS; its
    mailbox counts only where `applications` (the B2BUA can answer calls itself)."""
    view = ExtensionView(row[0], row[1], bool(row[2]), bool(row[3]), row[4], row[5], row[6],
                         int(row[7]), row[8], int(row[9]), row[10], row[11],
                         bool(row[14]) and applications)
    return view, int(row[12]), int(row[13])


class StoreDirectory:
    """The database as it is at `now`, read on sipd's shared connection.

    A direct call costs one statement (the extension with its bindings counted);
    a ring group one more (the group, its members and theirs, in one statement);
    each forward target one more. Reads need no transaction (WAL) and never wait
    for the write lock. `in_calls`: the B2BUA's count (no database read).
    """

    def __init__(self, now: float, in_calls: Callable[[str], int], conn=None,
                 applications: bool = False, timezone: str | None = None):
        self.now = now
        # Business hours without a zone of their own: PBX_TIMEZONE (read once if not given).
        self.timezone = timezone
        # Whether the B2BUA carries out Application steps (voicemail, *97/*98): until
        # it does, no mailbox is on as far as routing knows, and calls go as before.
        self.applications = applications
        self._in_calls = in_calls
        self._conn = conn
        self._extensions: dict[str, tuple[ExtensionView, int, int] | None] = {}
        self._groups: dict[str, GroupView | None] = {}
        self._routes: tuple[RouteView, ...] | None = None
        self._policy: PolicyView | None = None
        self._schedules: dict[str, ScheduleView | None] = {}

    def _connection(self):
        if self._conn is not None:
            return self._conn
        from core.models import db  # noqa: PLC0415 - TableDirectory needs no database

        return db.connection()

    def _extension(self, number: str) -> tuple[ExtensionView, int, int] | None:
        if number not in self._extensions:
            row = self._connection().execute(
                f"SELECT {_EXTENSION_COLUMNS} FROM extension e WHERE e.number = ?",
                (self.now, self.now, number),
            ).fetchone()
            self._extensions[number] = _view(row, self.applications) if row else None
        return self._extensions[number]

    def preload(self, *numbers: str) -> None:
        """Read these extensions in one statement (the B2BUA: the caller, whose name and
        call limit it needs, with the number dialled), so that the call costs no more
        statements than before routing."""
        wanted = sorted({n for n in numbers if n and n not in self._extensions})
        if not wanted:
            return
        rows = self._connection().execute(
            f"SELECT {_EXTENSION_COLUMNS} FROM extension e"
            f" WHERE e.number IN ({', '.join('?' * len(wanted))})",
            (self.now, self.now, *wanted),
        ).fetchall()
        for number in wanted:
            self._extensions[number] = None
        for row in rows:
            view = _view(row, self.applications)
            self._extensions[view[0].number] = view

    def extension(self, number: str) -> ExtensionView | None:
        found = self._extension(number)
        return found[0] if found else None

    def group(self, number: str) -> GroupView | None:
        if number not in self._groups:
            rows = self._connection().execute(
                "SELECT g.number, g.name, g.strategy, g.ring_time, g.member_time, g.fallback,"
                f" g.skip_busy, {_EXTENSION_COLUMNS}"
                " FROM ring_group g"
                " LEFT JOIN ring_group_member m ON m.group_id = g.id"
                " LEFT JOIN extension e ON e.id = m.extension_id"
                " WHERE g.number = ? ORDER BY m.position, m.id",
                (self.now, self.now, number),
            ).fetchall()
            if not rows:
                self._groups[number] = None
            else:
                members = []
                for row in rows:
                    if row[7] is None:  # a group without members
                        continue
                    member = _view(row[7:7 + _WIDTH], self.applications)
                    self._extensions.setdefault(member[0].number, member)
                    members.append(member[0].number)
                g = rows[0]
                self._groups[number] = GroupView(g[0], g[1], g[2], int(g[3]), int(g[4]),
                                                 tuple(members), g[5], bool(g[6]))
        return self._groups[number]

    def reachable(self, number: str) -> bool:
        found = self._extension(number)
        return bool(found and found[2])

    def registered(self, number: str) -> bool:
        found = self._extension(number)
        return bool(found and found[1])

    def in_calls(self, number: str) -> int:
        return self._in_calls(number)

    def routes(self) -> tuple[RouteView, ...]:
        """Read only for a number that is no extension or group: one statement,
        the routes with their enabled trunks in order."""
        if self._routes is None:
            rows = self._connection().execute(
                "SELECT r.id, r.name, r.patterns, r.caller_id, r.emergency, t.name, t.caller_id,"
                " r.record"
                " FROM outbound_route r"
                " LEFT JOIN outbound_route_trunk rt ON rt.route_id = r.id"
                " LEFT JOIN trunk t ON t.id = rt.trunk_id AND t.enabled"
                " ORDER BY r.position, r.id, rt.position"
            ).fetchall()
            routes: dict[int, tuple] = {}
            for row in rows:
                entry = routes.setdefault(row[0], (row, []))
                if row[5] is not None:
                    entry[1].append(TrunkView(row[5], row[6]))
            self._routes = tuple(
                RouteView(r[1], tuple(line.strip() for line in r[2].splitlines() if line.strip()),
                          tuple(trunks), r[3], bool(r[4]), bool(r[7]))
                for r, trunks in routes.values())
        return self._routes

    def policy(self) -> PolicyView:
        if self._policy is None:
            row = self._connection().execute(
                "SELECT home_country, allowed_countries FROM outbound_policy WHERE id = 1"
            ).fetchone()
            self._policy = PolicyView(*row) if row else PolicyView()
        return self._policy

    def ivr(self, name: str) -> bool:
        return self._connection().execute(
            "SELECT 1 FROM ivr WHERE name = ?", (name,)).fetchone() is not None

    def schedule(self, name: str) -> ScheduleView | None:
        """Three statements, only for a call that reaches business hours."""
        if name not in self._schedules:
            conn = self._connection()
            row = conn.execute("SELECT id, name, in_destination, out_destination, timezone"
                               " FROM schedule WHERE name = ?", (name,)).fetchone()
            if row is None:
                self._schedules[name] = None
            else:
                rules = [r for (r,) in conn.execute(
                    "SELECT rule FROM schedule_rule WHERE schedule_id = ?"
                    " ORDER BY position, id", (row[0],))]
                days = [d for (d,) in conn.execute(
                    "SELECT day FROM schedule_holiday WHERE schedule_id = ?", (row[0],))]
                self._schedules[name] = ScheduleView(
                    row[1], row[2], row[3], _schedule(rules, days, row[4] or self._zone()))
        return self._schedules[name]

    def _zone(self) -> str:
        if self.timezone is None:
            from core.config import load_settings  # noqa: PLC0415 - only for business hours

            self.timezone = load_settings().timezone
        return self.timezone

    def numbered(self, number: str) -> str:
        row = self._connection().execute(
            "SELECT 'ivr:' || name FROM ivr WHERE number = ?"
            " UNION ALL SELECT 'hours:' || name FROM schedule WHERE number = ?",
            (number, number)).fetchone()
        return row[0] if row else ""


def _schedule(rules, holidays, timezone: str) -> hours.Schedule:
    """The rows as core/hours.py judges them; a rule that no longer parses (written by
    hand) is left out rather than stopping every call to the schedule."""
    parsed = []
    for rule in rules:
        try:
            parsed.append(hours.parse_rule(rule))
        except hours.HoursError:
            continue
    days = set()
    for day in holidays:
        try:
            days.add(hours.parse_holiday(day))
        except hours.HoursError:
            continue
    try:
        hours.zone(timezone)
    except hours.HoursError:
        timezone = "UTC"
    return hours.Schedule(tuple(parsed), frozenset(days), timezone)


# -- from plain dicts, for tests ---------------------------------------------------------

PHONES = ("up", "unreachable", "none")  # registered and answering | not answering | none
_EXTENSION_FIELDS = {f.name for f in fields(ExtensionView)}
_GROUP_FIELDS = {f.name for f in fields(GroupView)}


class TableDirectory:
    """A directory from dicts: {"1001": {"dnd": True, "phones": "none", "calls": 1}}
    for extensions (ExtensionView's fields, plus `phones`, one of PHONES, "up" by
    default, and `calls`, the calls it is in) and {"600": {"name": "Sales",
    "members": ["1001", "1002"]}} for groups (GroupView's fields)."""

    applications = True  # Application steps (voicemail) may be planned

    def __init__(self, extensions: Mapping[str, Mapping] | None = None,
                 groups: Mapping[str, Mapping] | None = None,
                 routes: Sequence[Mapping] = (), policy: Mapping | None = None,
                 menus: Mapping[str, Mapping] | None = None,
                 schedules: Mapping[str, Mapping] | None = None):
        self.extensions: dict[str, ExtensionView] = {}
        self.phones: dict[str, str] = {}
        self.calls: dict[str, int] = {}
        for number, settings in (extensions or {}).items():
            settings = dict(settings)
            phones = settings.pop("phones", "up")
            if phones not in PHONES:
                raise ValueError(f"{number}: phones must be one of {PHONES}, got {phones!r}")
            self.phones[number] = phones
            self.calls[number] = settings.pop("calls", 0)
            unknown = set(settings) - _EXTENSION_FIELDS
            if unknown:
                raise ValueError(f"{number}: unknown settings {sorted(unknown)}")
            self.extensions[number] = ExtensionView(number, **settings)
        self.groups: dict[str, GroupView] = {}
        for number, settings in (groups or {}).items():
            settings = dict(settings)
            unknown = set(settings) - _GROUP_FIELDS
            if unknown:
                raise ValueError(f"group {number}: unknown settings {sorted(unknown)}")
            settings["members"] = tuple(settings.get("members", ()))
            self.groups[number] = GroupView(number, **settings)
        # routes: [{"name": "local", "patterns": ["9|XXXXXXX"], "trunks": ["acme"]}]
        # (a trunk as its name, or as {"name": ..., "caller_id": ...}).
        self.outbound: tuple[RouteView, ...] = tuple(
            RouteView(r["name"], tuple(r.get("patterns", ())),
                      tuple(TrunkView(t) if isinstance(t, str) else TrunkView(**t)
                            for t in r.get("trunks", ())),
                      r.get("caller_id", ""), r.get("emergency", False),
                      r.get("record", False))
            for r in routes)
        self.outbound_policy = PolicyView(**(policy or {}))
        # menus: {"main": {"number": "700"}}; schedules: {"day": {"rules": ["mon-fri
        # 09:00-18:00"], "holidays": ["2026-12-31"], "in": "ivr:main", "out":
        # "voicemail:1001", "timezone": "Asia/Tashkent", "number": "701"}}.
        self.menus = dict(menus or {})
        self.schedules = {
            name: ScheduleView(name, s["in"], s["out"],
                               hours.parse(s["rules"], s.get("holidays", ()),
                                           s.get("timezone", "UTC")))
            for name, s in (schedules or {}).items()}
        self.numbers = {m["number"]: f"ivr:{name}" for name, m in self.menus.items()
                        if m.get("number")}
        self.numbers.update({s["number"]: f"hours:{name}"
                             for name, s in (schedules or {}).items() if s.get("number")})

    def extension(self, number: str) -> ExtensionView | None:
        return self.extensions.get(number)

    def group(self, number: str) -> GroupView | None:
        return self.groups.get(number)

    def reachable(self, number: str) -> bool:
        return number in self.extensions and self.phones[number] == "up"

    def registered(self, number: str) -> bool:
        return number in self.extensions and self.phones[number] != "none"

    def in_calls(self, number: str) -> int:
        return self.calls.get(number, 0)

    def routes(self) -> tuple[RouteView, ...]:
        return self.outbound

    def policy(self) -> PolicyView:
        return self.outbound_policy

    def ivr(self, name: str) -> bool:
        return name in self.menus

    def schedule(self, name: str) -> ScheduleView | None:
        return self.schedules.get(name)

    def numbered(self, number: str) -> str:
        return self.numbers.get(number, "")

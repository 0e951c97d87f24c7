"""What the routing step may know of the PBX: a snapshot, asked for by number.

`decide` (decide.py) reads extensions, ring groups and the state of their phones
only through a `Directory`, so the rules are tested against plain tables
(`TableDirectory`) and run in sipd against the database (`StoreDirectory`,
a few reads per call on sipd's shared connection, each answer kept for the call).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class ExtensionView:
    number: str
    name: str = ""
    enabled: bool = True
    dnd: bool = False
    forward_always: str = ""
    forward_busy: str = ""
    forward_no_answer: str = ""
    forward_no_answer_after: int = 20
    forward_unavailable: str = ""
    max_calls: int = 4
    id: int = 0


@dataclass(frozen=True)
class GroupView:
    number: str
    name: str = ""
    strategy: str = "ringall"  # ringall | hunt
    ring_time: int = 30
    member_time: int = 15
    members: tuple[str, ...] = ()
    fallback: str = ""
    skip_busy: bool = True


class Directory(Protocol):
    def extension(self, number: str) -> ExtensionView | None: ...

    def group(self, number: str) -> GroupView | None: ...

    def registered(self, number: str) -> bool:
        """Whether the extension has a live binding at all."""

    def reachable(self, number: str) -> bool:
        """Whether it has a live binding that answers (not marked unreachable)."""

    def in_calls(self, number: str) -> int:
        """The live calls (ringing or answered) the extension is in now."""


@dataclass
class TableDirectory:
    """A directory from dicts, for tests: bindings[number] = "reachable" | "unreachable"."""

    extensions: dict[str, ExtensionView] = field(default_factory=dict)
    groups: dict[str, GroupView] = field(default_factory=dict)
    bindings: dict[str, str] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def extension(self, number):
        return self.extensions.get(number)

    def group(self, number):
        return self.groups.get(number)

    def registered(self, number):
        return number in self.bindings

    def reachable(self, number):
        return self.bindings.get(number) == "reachable"

    def in_calls(self, number):
        return self.calls.get(number, 0)


class StoreDirectory:
    """The database as sipd reads it (sipd/store.py's shared connection, no
    transaction: WAL reads), each answer kept for the life of this object (one
    call's routing). `live` holds the bindings read, which the B2BUA then rings
    without reading them again."""

    _EXTENSION = (
        "SELECT number, name, enabled, dnd, forward_always, forward_busy, forward_no_answer,"
        " forward_no_answer_after, forward_unavailable, max_calls, id FROM extension"
    )

    def __init__(self, now: float, in_calls, conn=None):
        from core.models import db  # noqa: PLC0415 - the tables need no database

        # Plain SELECTs (any SQL database reads them), on sipd's shared connection.
        self._conn = conn if conn is not None else db.connection()
        self._now = now
        self._in_calls = in_calls  # number -> live calls (the B2BUA's own count)
        self._extensions: dict[str, ExtensionView | None] = {}
        self._groups: dict[str, GroupView | None] = {}
        self.live: dict[str, list] = {}  # number -> its live bindings (store.LiveBinding)

    def preload(self, *numbers: str) -> None:
        """Read several extensions in one statement (a call's caller and callee)."""
        wanted = [n for n in dict.fromkeys(numbers) if n and n not in self._extensions]
        if not wanted:
            return
        marks = ", ".join("?" * len(wanted))
        for row in self._conn.execute(f"{self._EXTENSION} WHERE number IN ({marks})", wanted):
            self._extensions[row[0]] = _extension_view(row)
        for number in wanted:
            self._extensions.setdefault(number, None)

    def extension(self, number):
        if number not in self._extensions:
            row = self._conn.execute(f"{self._EXTENSION} WHERE number = ?", (number,)).fetchone()
            self._extensions[number] = _extension_view(row) if row else None
        return self._extensions[number]

    def group(self, number):
        if number not in self._groups:
            self._groups[number] = self._read_group(number)
        return self._groups[number]

    def _read_group(self, number: str) -> GroupView | None:
        row = self._conn.execute(
            "SELECT id, number, name, strategy, ring_time, member_time, fallback, skip_busy"
            " FROM ring_group WHERE number = ?", (number,)).fetchone()
        if row is None:
            return None
        members = tuple(m for (m,) in self._conn.execute(
            "SELECT e.number FROM ring_group_member m JOIN extension e ON e.id = m.extension_id"
            " WHERE m.group_id = ? ORDER BY m.position", (row[0],)))
        return GroupView(number=row[1], name=row[2], strategy=row[3], ring_time=row[4],
                         member_time=row[5], members=members, fallback=row[6],
                         skip_busy=bool(row[7]))

    def bindings(self, number: str) -> list:
        """The extension's live bindings (reachable or not), read once."""
        if number not in self.live:
            from sipd import store  # noqa: PLC0415 - the tables need no sipd

            view = self.extension(number)
            self.live[number] = store.live_bindings(view.id, self._now) if view else []
        return self.live[number]

    def registered(self, number):
        return bool(self.bindings(number))

    def reachable(self, number):
        return any(not b.unreachable for b in self.bindings(number))

    def in_calls(self, number):
        return self._in_calls(number)


def _extension_view(row) -> ExtensionView:
    return ExtensionView(
        number=row[0], name=row[1], enabled=bool(row[2]), dnd=bool(row[3]),
        forward_always=row[4], forward_busy=row[5], forward_no_answer=row[6],
        forward_no_answer_after=row[7], forward_unavailable=row[8], max_calls=row[9], id=row[10],
    )

"""Bans as rows of the `ban` table, shared by sipd, pbxctl and the panel.

Plain SQL on a DB-API connection (sqlite3's, or peewee's `db.connection()`),
so that sipd can keep one connection of its own for its `PRAGMA data_version`
checks. The table is the only source of truth: sipd's in-memory set of banned
addresses is rebuilt from it whenever another process has written (a lift in
the panel applies within a second), and the nftables set is filled from it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

# A ban is remembered for escalation this long: a repeat offence within it
# doubles the time; an address quiet for longer starts again at PBX_BAN_TIME.
MEMORY = 30 * 86400
# However often it offends, no ban is longer than this.
MAX_TIME = 30 * 86400


class BanError(Exception):
    """A request about bans we cannot carry out; the message is fit for a person."""


@dataclass(frozen=True)
class BanRow:
    id: int
    address: str
    reason: str
    failures: int
    offences: int
    created_at: float
    expires_at: float
    lifted_at: float | None
    lifted_by: str | None


_COLUMNS = "id, address, reason, failures, offences, created_at, expires_at, lifted_at, lifted_by"


def normalize(address: str) -> str:
    """The one spelling of an address (IPv4-mapped IPv6 as IPv4); BanError if none."""
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        raise BanError(f"{address!r} is not an IP address") from None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def duration(base: int, offences: int) -> int:
    """Seconds of the ban for the n-th offence: base, 2 base, 4 base ... at most MAX_TIME."""
    return int(min(MAX_TIME, base * 2 ** min(max(offences - 1, 0), 32)))


def active(conn, now: float) -> list[BanRow]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM ban WHERE lifted_at IS NULL AND expires_at > ?"
        " ORDER BY created_at, id",
        (now,),
    ).fetchall()
    return [BanRow(*row) for row in rows]


def active_until(conn, now: float) -> dict[str, float]:
    """{address: expires_at} of the bans in force."""
    until: dict[str, float] = {}
    for address, expires_at in conn.execute(
        "SELECT address, expires_at FROM ban WHERE lifted_at IS NULL AND expires_at > ?", (now,)
    ):
        until[address] = max(expires_at, until.get(address, 0.0))
    return until


def history(conn, limit: int = 100) -> list[BanRow]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM ban ORDER BY created_at DESC, id DESC LIMIT ?", (limit,)
    ).fetchall()
    return [BanRow(*row) for row in rows]


def previous_offences(conn, address: str, now: float) -> int:
    """Bans of `address` within MEMORY that an admin did not lift (a lift says: mistake)."""
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM ban WHERE address = ? AND created_at > ? AND lifted_at IS NULL",
        (address, now - MEMORY),
    ).fetchone()
    return count


def add(
    conn,
    address: str,
    reason: str,
    failures: int,
    offences: int,
    now: float,
    expires_at: float,
) -> int:
    cursor = conn.execute(
        "INSERT INTO ban (address, reason, failures, offences, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (normalize(address), reason[:255], failures, offences, now, expires_at),
    )
    return cursor.lastrowid


def lift(conn, address: str, by: str, now: float) -> int:
    """Lift the bans in force on `address`; the number lifted (0: it was not banned)."""
    cursor = conn.execute(
        "UPDATE ban SET lifted_at = ?, lifted_by = ?"
        " WHERE address = ? AND lifted_at IS NULL AND expires_at > ?",
        (now, by[:64], normalize(address), now),
    )
    return cursor.rowcount

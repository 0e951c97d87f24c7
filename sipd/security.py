"""sipd's defences: bans for password guessers and scanners, rate and connection limits.

The transports ask `Guard.admit(data, source)` before they parse anything: a
banned source, a source over its rate, or a request with a scanner's
User-Agent gets no answer at all (an answer would tell a scanner there is a
PBX here). The registrar reports authentication failures with
`Guard.auth_failed`. The clock is passed in and no socket is touched, so the
whole policy is unit-tested with a fake clock; the only I/O is the database
(through `BanList`) and the optional nftables command (through a callback).

Decisions, with the reasons:

- What counts toward a ban: failures that could tell a guesser something
  (wrong password, unknown extension, authentication user not the extension)
  and requests with a scanner User-Agent. Stale or foreign nonces, malformed
  credentials, a disabled extension or a realm mismatch are client or admin
  problems and reveal nothing about a password, so they are logged, not counted.
  Nor is anything sent with a nonce that went to another address: its source
  may be forged, and only a nonce sent to an address proves the sender is
  there (the registrar decides that before any counted failure).
- Failures are counted per source address. Many failures against one
  extension from many addresses are logged (and each is in auth_attempt, shown
  per extension in the panel) but never lock the extension: a lock would let
  anyone keep a real phone out of service.
- A source that has live registrations (phones that proved their password
  from there, e.g. an office behind one NAT) is banned only at
  REGISTERED_FACTOR times the threshold, so one phone with an old password does
  not cut off a whole office; a guesser there is still stopped.
- The failure counters are in memory: they detect a burst, and a restart
  losing them gives a guesser a few more tries at most. Bans are in the
  database, the only source of truth; the set here is a cache re-read whenever
  `PRAGMA data_version` says another connection wrote, so a lift in the panel
  or by `pbxctl ban rm` applies within CHECK_INTERVAL.
- PBX_TRUSTED_NETWORKS are never banned, rate-limited or connection-limited.
  A scanner User-Agent from there is still not answered.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import resource
import shlex
import sqlite3
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from core import bans
from sipd import dblock

log = logging.getLogger("sipd")

# How often the ban cache asks SQLite whether another connection wrote.
CHECK_INTERVAL = 0.2
# A source with live registrations is banned at this many times the threshold.
REGISTERED_FACTOR = 4
# Bound on the addresses (and extension numbers) tracked in memory; spoofed
# UDP sources must not grow sipd without limit. The oldest are forgotten first.
MAX_TRACKED = 50_000
# At most one log line per source and cause per this many seconds.
LOG_INTERVAL = 60.0

# A header line's start is the end of the line before it (the first line is the
# start line): anchoring on "\n" lets the regex engine skip ahead, where "^" with
# re.M tried every byte (3.2 against 0.45 µs for a REGISTER; this runs on every
# datagram).
_USER_AGENT = re.compile(rb"\nUser-Agent[ \t]*:[ \t]*([^\r\n]*)", re.I)


@dataclass(frozen=True)
class Policy:
    threshold: int = 5  # offences within `window` that ban; 0 = never ban
    window: float = 600.0
    ban_time: int = 3600  # the first ban; each repeat doubles it
    trusted: tuple = ()  # ipaddress networks
    scanner_agents: tuple[str, ...] = ()
    rate: float = 100.0  # requests per second per source; 0 = no limit
    burst: float = 400.0
    max_tcp_per_source: int = 100  # 0 = no limit
    max_tcp_total: int = 0  # 0 = no limit; build() sets half the file descriptor limit

    @classmethod
    def from_settings(cls, settings) -> Policy:
        return cls(
            threshold=settings.ban_threshold,
            window=float(settings.ban_window),
            ban_time=settings.ban_time,
            trusted=tuple(settings.trusted_networks),
            scanner_agents=tuple(settings.scanner_agents),
            rate=float(settings.rate_limit),
            burst=float(settings.rate_burst),
            max_tcp_per_source=settings.max_tcp_per_source,
        )


def scanner_pattern(agents: Iterable[str]) -> re.Pattern | None:
    """A User-Agent matches an entry that starts a word and is not followed by a letter.

    "sipv" then matches "sipv/0.1" but not "SIPVoice", and "Gulp" matches
    "Gulp/1.2" but not "Gulpin".
    """
    words = [re.escape(agent.strip()) for agent in agents if agent.strip()]
    if not words:
        return None
    return re.compile(rf"(?<![a-z0-9])(?:{'|'.join(words)})(?![a-z])", re.I)


class _Recent(dict):
    """A dict forgetting its oldest keys beyond `limit` (insertion order)."""

    def __init__(self, limit: int = MAX_TRACKED):
        super().__init__()
        self.limit = limit

    def remember(self, key, value):
        if key not in self and len(self) >= self.limit:
            for old in list(self)[: max(1, self.limit // 10)]:
                del self[old]
        self[key] = value
        return value


class BanList:
    """The bans in force: a cache of the `ban` table that never goes stale.

    It owns a connection of its own, because SQLite's data_version counts
    commits by *other* connections: any write by the panel, pbxctl or another
    connection of sipd makes the next check re-read the table.
    """

    def __init__(self, conn: sqlite3.Connection, clock: Callable[[], float] = time.time):
        self.conn = conn
        self.clock = clock
        self._until: dict[str, float] = {}
        self._version = None
        self._checked = float("-inf")
        self.on_lift: Callable[[str], None] | None = None
        # A ban another process wrote (`pbxctl ban add`, another sipd process):
        # (address, seconds left), so the firewall gets it as a lift reaches it.
        self.on_ban: Callable[[str, float], None] | None = None
        self.reload(clock())

    @classmethod
    def open(cls, path: str, clock: Callable[[], float] = time.time) -> BanList:
        # A ban waits for the write lock on the loop, not inside SQLite (sipd/dblock.py).
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
        dblock.no_busy_wait(conn)
        return cls(conn, clock)

    def banned(self, host: str, now: float) -> bool:
        if now - self._checked >= CHECK_INTERVAL:
            self.refresh(now)
        until = self._until.get(host)
        return until is not None and until > now

    def refresh(self, now: float) -> None:
        self._checked = now
        (version,) = self.conn.execute("PRAGMA data_version").fetchone()
        if version != self._version:
            self.reload(now, version)

    def reload(self, now: float, version=None) -> None:
        if version is None:
            (version,) = self.conn.execute("PRAGMA data_version").fetchone()
        before = self._until
        self._until = bans.active_until(self.conn, now)
        self._version = version
        self._checked = now
        for address, until in before.items():
            if until > now and address not in self._until:
                log.info("[SIP] Ban of %s lifted", address)
                if self.on_lift:
                    self.on_lift(address)
        for address, until in self._until.items():
            if until > now and before.get(address, 0.0) <= now and self.on_ban:
                self.on_ban(address, until - now)

    def active(self, now: float) -> dict[str, float]:
        return {a: u for a, u in self._until.items() if u > now}

    def add(self, address: str, reason: str, failures: int, base: int, now: float):
        """Ban `address`; (seconds, offences). The cache is updated even if the write fails."""
        offences = 1
        try:
            offences += bans.previous_offences(self.conn, address, now)
            seconds = bans.duration(base, offences)
            with dblock.transaction(self.conn):
                bans.add(self.conn, address, reason, failures, offences, now, now + seconds)
        except sqlite3.Error as error:
            seconds = bans.duration(base, offences)
            log.error("[SIP] Could not store the ban of %s: %s", address, error)
        self._until[address] = now + seconds
        return seconds, offences

    def registered_from(self, host: str, now: float) -> int:
        (count,) = self.conn.execute(
            "SELECT COUNT(*) FROM binding WHERE source_host = ? AND expires_at > ?", (host, now)
        ).fetchone()
        return count

    def close(self) -> None:
        self.conn.close()


class _Bucket:
    __slots__ = ("tokens", "at")

    def __init__(self, tokens: float, at: float):
        self.tokens, self.at = tokens, at


class Guard:
    def __init__(
        self,
        policy: Policy,
        banlist: BanList,
        clock: Callable[[], float] = time.time,
        on_ban: Callable[[str, int], None] | None = None,
        on_lift: Callable[[str], None] | None = None,
    ):
        self.policy = policy
        self.bans = banlist
        self.clock = clock
        self.on_ban = on_ban
        self.on_lift = on_lift
        self._scanner = scanner_pattern(policy.scanner_agents)
        self._trusted: _Recent = _Recent()
        self._buckets: _Recent = _Recent()
        self._offences: _Recent = _Recent()  # host -> deque of (time, kind)
        self._per_number: _Recent = _Recent()  # number -> deque of (time, host)
        self._warned_number: _Recent = _Recent()
        self._tcp: dict[str, int] = {}
        self.tcp_total = 0
        self._quiet: _Recent = _Recent()  # (host, cause) -> [last logged, suppressed]
        banlist.on_lift = self._lifted
        banlist.on_ban = self._banned_elsewhere

    # -- what the transports ask ----------------------------------------------------

    def admit(self, data: bytes, source) -> bool:
        """False: drop `data` from `source` without an answer (banned, rate, scanner)."""
        now = self.clock()
        host = source.host
        if self.bans.banned(host, now):
            self.dropped(source, "banned", now=now)
            return False
        trusted = self.trusted(host)
        if not trusted and self.policy.rate > 0 and not self._take_token(host, now):
            self.dropped(source, "rate limited", now=now)
            return False
        agent = self.scanner_agent(data)
        if agent is not None:
            self.dropped(source, f"scanner User-Agent {agent!r}", now=now)
            if not trusted:
                self._offence(host, "scanner", now, agent)
            return False
        return True

    def scanner_agent(self, data: bytes) -> str | None:
        """The User-Agent of `data` if it is a scanner's, else None."""
        if self._scanner is None:
            return None
        match = _USER_AGENT.search(data)
        if not match:
            return None
        agent = match.group(1).decode("latin-1").strip()
        if not self._scanner.search(agent):
            return None
        return "".join(c if c.isprintable() else "?" for c in agent)[:64]

    def tcp_opened(self, source) -> bool:
        """Account a new TCP/TLS connection; False: close it at once."""
        now = self.clock()
        host = source.host
        if self.bans.banned(host, now):
            self.dropped(source, "banned", "connection", now)
            return False
        limit = self.policy.max_tcp_per_source
        count = self._tcp.get(host, 0)
        if limit and count >= limit and not self.trusted(host):
            self.dropped(
                source, f"more than {limit} connections from one address", "connection", now
            )
            return False
        total = self.policy.max_tcp_total
        if total and self.tcp_total >= total:
            # Descriptors are kept for UDP, the database and the media relay.
            self.dropped(source, f"more than {total} connections in all", "connection", now)
            return False
        self._tcp[host] = count + 1
        self.tcp_total += 1
        return True

    def tcp_closed(self, source) -> None:
        self.tcp_total = max(0, self.tcp_total - 1)
        count = self._tcp.get(source.host, 0) - 1
        if count > 0:
            self._tcp[source.host] = count
        else:
            self._tcp.pop(source.host, None)

    def refresh(self) -> None:
        """Re-read the bans if another process wrote (run every half second by the daemon,
        so a lift reaches the firewall even when the lifted address is silent)."""
        self.bans.refresh(self.clock())

    # -- what the registrar reports ---------------------------------------------------

    def auth_failed(self, number: str, source, reason: str) -> None:
        """A failed authentication that could tell a guesser something."""
        now = self.clock()
        self._count_number(number, source.host, now)
        if not self.trusted(source.host):
            self._offence(source.host, "auth", now, reason)

    # -- the policy -----------------------------------------------------------------

    def trusted(self, host: str) -> bool:
        known = self._trusted.get(host)
        if known is None:
            try:
                ip = ipaddress.ip_address(host)
                known = any(ip in network for network in self.policy.trusted)
            except ValueError:
                known = False
            self._trusted.remember(host, known)
        return known

    def _take_token(self, host: str, now: float) -> bool:
        bucket = self._buckets.get(host)
        if bucket is None:
            bucket = self._buckets.remember(host, _Bucket(self.policy.burst, now))
        else:
            elapsed = max(0.0, now - bucket.at)
            bucket.tokens = min(self.policy.burst, bucket.tokens + elapsed * self.policy.rate)
            bucket.at = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _offence(self, host: str, kind: str, now: float, detail: str) -> None:
        policy = self.policy
        if policy.threshold <= 0 or self.bans.banned(host, now):
            return
        record = self._offences.get(host)
        if record is None:
            size = policy.threshold * REGISTERED_FACTOR
            record = self._offences.remember(
                host, _Offences(deque(maxlen=size), deque(maxlen=size))
            )
        record.add(kind, now, detail, now - policy.window)
        failures, scans = len(record.auth), len(record.scanner)
        if failures + scans < policy.threshold:
            return
        registered = self.bans.registered_from(host, now)
        if registered:
            # Phones proved their passwords from here: only failed authentications
            # count, at a higher threshold (scanner requests over UDP are the
            # easiest to spoof with someone else's address).
            needed = policy.threshold * REGISTERED_FACTOR
            if failures < needed:
                if kind == "auth" and failures == policy.threshold:
                    log.warning(
                        "[SIP] %d failed authentications from %s in %d s, not banned yet: "
                        "%d registration(s) are live from there (banned at %d)",
                        failures,
                        host,
                        policy.window,
                        registered,
                        needed,
                    )
                return
            scans = 0
        reason = _ban_reason(failures, scans, record.agent, policy.window)
        seconds, offences = self.bans.add(host, reason, failures + scans, policy.ban_time, now)
        repeat = f" (offence {offences})" if offences > 1 else ""
        log.warning("[SIP] Banned %s for %d s: %s%s", host, seconds, reason, repeat)
        self._offences.pop(host, None)
        self._buckets.pop(host, None)
        if self.on_ban:
            self.on_ban(host, seconds)

    def _count_number(self, number: str, host: str, now: float) -> None:
        """Failures against one extension from anywhere: logged, never a lock (see above)."""
        limit = max(1, self.policy.threshold) * REGISTERED_FACTOR
        recent = self._per_number.get(number)
        if recent is None:
            recent = self._per_number.remember(number, deque(maxlen=limit))
        recent.append((now, host))
        while recent and recent[0][0] <= now - self.policy.window:
            recent.popleft()
        warned = self._warned_number.get(number, float("-inf"))
        if len(recent) >= limit and now - warned >= self.policy.window:
            self._warned_number.remember(number, now)
            sources = len({h for _, h in recent})
            log.warning(
                "[SIP] Extension %s: %d failed authentications in %d s from %d address(es)",
                number,
                len(recent),
                self.policy.window,
                sources,
            )

    def _banned_elsewhere(self, address: str, seconds: float) -> None:
        """A ban written by another process: logged here, and given to the firewall.

        With registration workers every process sees it and runs the command;
        the command replaces an existing element, so that is harmless.
        """
        log.info("[SIP] Ban of %s applied: %d s left", address, seconds)
        if self.on_ban:
            self.on_ban(address, seconds)

    def _lifted(self, address: str) -> None:
        """A lifted ban starts the address with a clean slate."""
        self._offences.pop(address, None)
        self._buckets.pop(address, None)
        if self.on_lift:
            self.on_lift(address)

    def dropped(self, source, cause: str, what: str = "request", now: float | None = None):
        """Log a drop naming its cause, at most once per source and cause per LOG_INTERVAL."""
        now = self.clock() if now is None else now
        key = (source.host, cause)
        state = self._quiet.get(key)
        if state is not None and now - state[0] < LOG_INTERVAL:
            state[1] += 1
            return
        more = f" ({state[1]} more since the last report)" if state and state[1] else ""
        self._quiet.remember(key, [now, 0])
        log.info("[SIP] Dropped %s from %s: %s%s", what, source, cause, more)

    def prune(self, now: float | None = None) -> None:
        """Forget full buckets and old counters (housekeeping)."""
        now = self.clock() if now is None else now
        policy = self.policy
        for host, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.at) * policy.rate >= policy.burst:
                del self._buckets[host]
        for host, record in list(self._offences.items()):
            if record.last <= now - policy.window:
                del self._offences[host]
        for number, recent in list(self._per_number.items()):
            if not recent or recent[-1][0] <= now - policy.window:
                del self._per_number[number]
        for key, state in list(self._quiet.items()):
            if now - state[0] >= LOG_INTERVAL:
                del self._quiet[key]
        for number, warned in list(self._warned_number.items()):
            if now - warned >= policy.window:
                del self._warned_number[number]


class _Offences:
    """Recent failed authentications and scanner requests of one source."""

    __slots__ = ("auth", "scanner", "agent")

    def __init__(self, auth: deque, scanner: deque):
        self.auth, self.scanner, self.agent = auth, scanner, ""

    def add(self, kind: str, now: float, detail: str, since: float) -> None:
        (self.auth if kind == "auth" else self.scanner).append(now)
        if kind == "scanner":
            self.agent = detail
        for times in (self.auth, self.scanner):
            while times and times[0] <= since:
                times.popleft()

    @property
    def last(self) -> float:
        return max(self.auth[-1] if self.auth else 0.0, self.scanner[-1] if self.scanner else 0.0)


def _ban_reason(failures: int, scans: int, agent: str, window: float) -> str:
    if not scans:
        return f"{failures} failed authentications in {int(window)} s"
    if not failures:
        return f"{scans} requests with scanner User-Agent {agent!r} in {int(window)} s"
    return (
        f"{failures} failed authentications and {scans} requests with scanner "
        f"User-Agent {agent!r} in {int(window)} s"
    )


class BanCommand:
    """PBX_NFT_BAN_COMMAND, run as `COMMAND add ADDRESS SECONDS` and `COMMAND del ADDRESS`.

    sipd is unprivileged; the command is what reaches the firewall (on a server,
    the pbx role's helper: it adds the address to the nftables set `pbx_banned_v4`
    or `pbx_banned_v6` of table `inet pbx` with the timeout). It runs off the hot
    path (`spawn`), and a failure is logged, never fatal: the ban in sipd holds.
    """

    TIMEOUT = 10

    def __init__(self, command: str, spawn: Callable | None = None):
        self.argv = shlex.split(command)
        self.spawn = spawn or (lambda function, *args: function(*args))

    def add(self, address: str, seconds: float) -> None:
        self.spawn(self.run, ["add", address, str(max(1, int(seconds)))])

    def remove(self, address: str) -> None:
        self.spawn(self.run, ["del", address])

    def run(self, args: list[str]) -> bool:
        command = " ".join([*self.argv, *args])
        try:
            result = subprocess.run(
                [*self.argv, *args],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=self.TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError) as error:
            log.error("[SIP] Ban command failed: %s: %s", command, error)
            return False
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            detail = lines[-1] if lines else "no output"
            log.error("[SIP] Ban command exited %d: %s: %s", result.returncode, command, detail)
            return False
        log.debug("[SIP] Ban command done: %s", command)
        return True


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard one (systemd's soft default is 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 65536)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def build(settings, spawn: Callable | None = None, clock: Callable[[], float] = time.time):
    """The Guard for `settings`, its bans read from the database (and pushed to the firewall)."""
    banlist = BanList.open(settings.db_path, clock)
    command = BanCommand(settings.nft_ban_command, spawn) if settings.nft_ban_command else None
    policy = replace(Policy.from_settings(settings), max_tcp_total=raise_fd_limit() // 2)
    guard = Guard(
        policy,
        banlist,
        clock,
        on_ban=command.add if command else None,
        on_lift=command.remove if command else None,
    )
    if command:
        # After a reboot the kernel's set is empty; the database is not.
        now = clock()
        for address, until in banlist.active(now).items():
            command.add(address, until - now)
    return guard

"""The one schema both processes share (peewee on a DatabaseProxy).

The database is the only source of truth for credentials, bindings and
authentication history: nothing here is ever kept only in a process.
Times are UNIX seconds (float, UTC) so that sipd can compare them without
parsing and the panel can format them in the admin's zone.
"""

from __future__ import annotations

import time

from peewee import (
    BooleanField,
    CharField,
    DatabaseProxy,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    SqliteDatabase,
    TextField,
    fn,
)

db = DatabaseProxy()

# journal_mode=wal lets the panel read while sipd writes; busy_timeout makes a
# writer wait for the other process instead of failing (sipd sets it to 0 and
# waits on its event loop instead, sipd/dblock.py); synchronous=normal is
# durable against a crashed process (the WAL survives kill -9) and avoids an
# fsync per registration.
PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 5000,
    "synchronous": "normal",
    "cache_size": -16000,
}


def open_database(path: str, shared: bool = False) -> SqliteDatabase:
    """Bind the proxy to the SQLite file at `path` and return the database.

    By default each thread has its own connection; under gevent's monkey
    patching that means each greenlet, so a process that spawns one per
    message (sipd) would open, set up and drop a connection per message.
    `shared`: one connection for the process, for a single-threaded gevent
    process whose transactions never yield to another greenlet (sipd's do not).
    """
    # Transactions begin IMMEDIATE: with several writers (sipd, its registration
    # workers, the panel, pbxctl), a deferred transaction that read and then
    # wrote fails at once (SQLITE_BUSY, busy_timeout does not apply) if another
    # connection committed in between; an immediate one waits for the lock.
    database = SqliteDatabase(
        path, pragmas=PRAGMAS, check_same_thread=False, thread_safe=not shared,
        lock_type="IMMEDIATE",
    )
    db.initialize(database)
    return database


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False


class Admin(BaseModel):
    """A panel user. User names are unique whatever their case (migration 0006 adds a
    unique index on lower(username)): "Admin" is the account "admin"."""

    username = CharField(max_length=64, unique=True)
    password_hash = CharField(max_length=255)
    role = CharField(max_length=16, default="admin")  # admin | viewer
    created_at = FloatField(default=time.time)
    last_login_at = FloatField(null=True)
    enabled = BooleanField(default=True)
    # Every session carries the value this had when it began; logging out, a new
    # password or disabling the account adds one, which ends all of them at once,
    # wherever their cookies are (app/auth/sessions.py).
    session_epoch = IntegerField(default=0)
    # The panel's language this admin chose (app/i18n.py); "" until then: the browser decides.
    language = CharField(max_length=8, default="")

    # Flask-Login's user protocol, kept here so the panel needs no wrapper.
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return bool(self.enabled)

    def get_id(self) -> str:
        return str(self.id)

    @classmethod
    def by_username(cls, username: str) -> Admin | None:
        """The account `username` names in any case.

        User names are ASCII (core.accounts.USERNAME_RE), where Python's lower() and
        SQL's agree; a name that is not ASCII names nobody (the Kelvin sign is not "K").
        """
        username = (username or "").strip()
        if not username.isascii():
            return None
        return cls.get_or_none(fn.lower(cls.username) == username.lower())


class Extension(BaseModel):
    number = CharField(max_length=32, unique=True)
    name = CharField(max_length=100, default="")
    enabled = BooleanField(default=True)
    # Calls this extension may be in at once, as caller or callee (sipd/b2bua/calls.py):
    # one extension cannot take every call the PBX can carry (PBX_MAX_CALLS).
    max_calls = IntegerField(default=4)
    # Routing (sipd/routing/, migration 0011). A forward is a destination in the
    # notation every part shares (core/destinations.py): "1002", "600", "hangup";
    # "" means none. DND: callers get busy, or forward_busy where one is set.
    dnd = BooleanField(default=False)
    forward_always = CharField(max_length=64, default="")
    forward_busy = CharField(max_length=64, default="")
    forward_no_answer = CharField(max_length=64, default="")
    forward_no_answer_after = IntegerField(default=20)  # seconds of ringing first
    forward_unavailable = CharField(max_length=64, default="")  # nothing registered
    # RFC 7616 §3.4.2: HA1 = H(username ":" realm ":" password). Only these
    # are stored, never the password; the realm they were made under is kept
    # so a changed PBX_REALM is reported instead of failing silently.
    realm = CharField(max_length=255)
    ha1_md5 = CharField(max_length=32)
    ha1_sha256 = CharField(max_length=64)
    # The digest challenges its phones are offered, most preferred first
    # ("SHA-256,MD5"); "" is the PBX's PBX_DIGEST_ALGORITHMS (migration 0012).
    digest_algorithms = CharField(max_length=32, default="")
    # Calls to the outside world (issue 12, migration 0013): what this extension may
    # dial (OUTBOUND_PERMISSIONS), the caller ID sent for it ("" = the route's or the
    # trunk's), its limits (None = OutboundPolicy's default), and the block an hourly
    # limit sets until an admin lifts it (None = not blocked).
    outbound_permission = CharField(max_length=16, default="national")
    outbound_caller_id = CharField(max_length=32, default="")
    outbound_max_calls = IntegerField(null=True)
    outbound_calls_per_hour = IntegerField(null=True)
    outbound_minutes_per_hour = IntegerField(null=True)
    outbound_blocked_at = FloatField(null=True)
    outbound_blocked_reason = CharField(max_length=255, default="")
    # Its calls, in and out, recorded (migration 0016, sipd/recording.py).
    record_calls = BooleanField(default=False)
    created_at = FloatField(default=time.time)
    updated_at = FloatField(default=time.time)

    @classmethod
    def by_number(cls, number: str) -> Extension | None:
        return cls.get_or_none(cls.number == number)


class RingGroup(BaseModel):
    """A number that rings several extensions (issue 11, item 3).

    strategy: ringall (every member at once) | hunt (one after another,
    member_time seconds each, in position order). ring_time bounds the whole
    group; fallback is the destination when nobody answers ("" : the caller
    gets 480). A group's number never equals an extension's (core/destinations.py).
    """

    STRATEGIES = ("ringall", "hunt")

    number = CharField(max_length=32, unique=True)
    name = CharField(max_length=100, default="")
    strategy = CharField(max_length=16, default="ringall")
    ring_time = IntegerField(default=30)
    member_time = IntegerField(default=15)
    fallback = CharField(max_length=64, default="")
    # Skip a member already in a call (FreePBX's "Skip Busy Agent"; on here, as a
    # receptionist's group should not ring the desk that is talking). Off: a member
    # in a call is rung too, its phone's call waiting decides.
    skip_busy = BooleanField(default=True)
    created_at = FloatField(default=time.time)
    updated_at = FloatField(default=time.time)

    @classmethod
    def by_number(cls, number: str) -> RingGroup | None:
        return cls.get_or_none(cls.number == number)

    def member_numbers(self) -> list[str]:
        return [
            m.extension.number
            for m in (
                RingGroupMember.select(RingGroupMember, Extension)
                .join(Extension)
                .where(RingGroupMember.group == self)
                .order_by(RingGroupMember.position)
            )
        ]


class RingGroupMember(BaseModel):
    """An extension in a ring group, at its place in the hunt order (0 first)."""

    group = ForeignKeyField(RingGroup, backref="members", on_delete="CASCADE")
    extension = ForeignKeyField(Extension, backref="group_memberships", on_delete="CASCADE")
    position = IntegerField()

    class Meta:
        indexes = ((("group", "extension"), True),)


class Binding(BaseModel):
    """One registered contact of an extension (RFC 3261 §10.3)."""

    extension = ForeignKeyField(Extension, backref="bindings", on_delete="CASCADE")
    aor = CharField(max_length=255)
    contact = TextField()  # the Contact URI as the phone sent it
    source_host = CharField(max_length=64)  # where the REGISTER really came from
    source_port = IntegerField()
    transport = CharField(max_length=8)  # UDP | TCP | TLS
    expires_at = FloatField(index=True)
    call_id = CharField(max_length=255)
    cseq = IntegerField()
    user_agent = CharField(max_length=255, default="")
    instance = CharField(max_length=255, default="")  # +sip.instance (RFC 5626 §4.1)
    q = FloatField(null=True)
    registered_at = FloatField(default=time.time)
    updated_at = FloatField(default=time.time)
    # Since when the binding has not answered sipd's OPTIONS probes (sipd/qualifier.py);
    # None: it answered the last one, or was not probed yet. Calls do not ring it.
    unreachable_since = FloatField(null=True)
    # When a phone like it (same address and User-Agent) registered again from a new
    # port: the qualifier probes it at once and drops it unless it answers.
    superseded_at = FloatField(null=True)

    class Meta:
        indexes = ((("extension", "contact"), True),)

    @classmethod
    def live(cls, now: float | None = None):
        now = time.time() if now is None else now
        return cls.select().where(cls.expires_at > now)


class AuthAttempt(BaseModel):
    """What happened when a peer tried to authenticate, and why."""

    created_at = FloatField(default=time.time, index=True)
    number = CharField(max_length=64, index=True)  # as sent, even if no such extension
    method = CharField(max_length=16, default="REGISTER")
    source_host = CharField(max_length=64)
    source_port = IntegerField()
    transport = CharField(max_length=8, default="UDP")
    user_agent = CharField(max_length=255, default="")
    # challenge: a phone was challenged and never answered (sipd/unanswered.py)
    result = CharField(max_length=16)  # success | failure | challenge
    reason = CharField(max_length=255, default="")
    times = IntegerField(default=1)  # requests the row stands for (migration 0012)

    @classmethod
    def recent_for(cls, number: str, limit: int = 20):
        return (
            cls.select()
            .where(cls.number == number)
            .order_by(cls.created_at.desc(), cls.id.desc())
            .limit(limit)
        )


class Call(BaseModel):
    """One call through the B2BUA, from INVITE to the end (issue: calls).

    state: ringing | answered | ended. A row with ended_at NULL is a live call;
    sipd closes any such row left by a crash when it starts, so nothing stays
    "active" after a restart.
    disposition (when ended): ANSWERED | NO ANSWER | BUSY | FAILED | CANCELLED.
    hangup_by: caller | callee | system (timeouts, dead media, admin, restart).
    """

    DISPOSITIONS = ("ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CANCELLED")

    # The caller's leg Call-ID. Not unique: two INVITEs with one Call-ID and
    # different From tags are two calls (RFC 3261 §12); a call is its row id.
    call_id = CharField(max_length=255, index=True)
    caller = CharField(max_length=64, index=True)
    # The name the callee was shown: the caller extension's name in the panel.
    caller_name = CharField(max_length=100, default="")
    # The display name the caller's phone put in From (never shown to the callee).
    caller_claimed = CharField(max_length=100, default="")
    callee = CharField(max_length=64, index=True)
    caller_source = CharField(max_length=80, default="")  # host:port/transport
    callee_contact = TextField(default="")
    state = CharField(max_length=16, default="ringing")
    started_at = FloatField(default=time.time, index=True)
    answered_at = FloatField(null=True)
    ended_at = FloatField(null=True, index=True)
    disposition = CharField(max_length=16, null=True)
    hangup_by = CharField(max_length=16, null=True)
    sip_status = IntegerField(null=True)
    reason = CharField(max_length=255, default="")
    caller_media = CharField(max_length=80, default="")  # latched RTP source of each leg
    callee_media = CharField(max_length=80, default="")
    codec = CharField(max_length=32, default="")
    # Routing (migration 0011): the extension whose phone answered (callee may be a
    # group's number), and the ring group the call came through, by its number.
    answered_by = CharField(max_length=64, default="")
    via_group = CharField(max_length=32, default="")
    # While it rings: the extensions being rung now, comma-separated ("1001,1002"),
    # for the live calls page; "" once answered or ended.
    ringing = CharField(max_length=255, default="")
    # Outside calls (migration 0013): internal | outbound | inbound, the trunk used
    # (its name) and the number as sent to it after the route's rewrite.
    direction = CharField(max_length=16, default="internal")
    trunk = CharField(max_length=64, default="", index=True)
    number_sent = CharField(max_length=64, default="")
    # The call's recording (migration 0016): a stereo WAV's path relative to
    # PBX_RECORDING_DIR; "" when not recorded, or removed after PBX_RECORDING_DAYS.
    recording = CharField(max_length=255, default="")

    @property
    def talk_seconds(self) -> float:
        if self.answered_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else time.time()
        return max(0.0, end - self.answered_at)

    @classmethod
    def active(cls):
        return cls.select().where(cls.ended_at.is_null()).order_by(cls.started_at)


class CallEvent(BaseModel):
    """Something that happened to a call on its way: a forward, a step of a group,
    a transfer (who, to whom, when). `call` is the call row's id (rows are written
    in group commits, sipd/history.py, so no foreign key to order them by).

    kind: forwarded | group | transferred | refused_loop | feature
    """

    call = IntegerField(index=True)
    at = FloatField()
    kind = CharField(max_length=32)
    by = CharField(max_length=64, default="")  # the extension that caused it, if any
    target = CharField(max_length=64, default="")  # where the call went
    detail = CharField(max_length=255, default="")


class Ban(BaseModel):
    """An address sipd drops without answering, until `expires_at` or a lift.

    Written by sipd (sipd/security.py), lifted by the panel or `pbxctl ban rm`
    (core/bans.py); sipd notices a lift within a second through data_version.
    """

    address = CharField(max_length=64, index=True)  # as ipaddress writes it
    reason = CharField(max_length=255)  # e.g. "5 failed authentications in 600 s"
    failures = IntegerField()  # offences counted in the window that led to it
    offences = IntegerField()  # 1 for a first ban; the time doubles with each
    created_at = FloatField(default=time.time, index=True)
    expires_at = FloatField(index=True)
    lifted_at = FloatField(null=True)
    lifted_by = CharField(max_length=64, null=True)  # panel user, or "cli:<unix user>"

    @classmethod
    def active(cls, now: float | None = None):
        now = time.time() if now is None else now
        return cls.select().where(cls.lifted_at.is_null(), cls.expires_at > now)


class AuditEntry(BaseModel):
    """One change to the PBX: who, what, when, from where (see core/audit.py).

    actor: a panel user name, "cli:<unix user>" for pbxctl, or "" when nobody
    is logged in (a failed login: the user name tried is then the target).
    """

    created_at = FloatField(default=time.time, index=True)
    actor = CharField(max_length=80, default="", index=True)
    action = CharField(max_length=32)  # e.g. extension.create, login_failed, call.hangup
    target = CharField(max_length=255, default="")
    source = CharField(max_length=80, default="")  # client address, or "local" for pbxctl
    detail = CharField(max_length=255, default="")

    class Meta:
        table_name = "audit_log"


class LoginThrottle(BaseModel):
    """Consecutive failed panel logins for one key ("user:NAME" or "addr:ADDRESS").

    Kept in the database so that every panel worker sees the same counters.
    """

    key = CharField(max_length=160, primary_key=True)
    failures = IntegerField(default=0)
    last_failure_at = FloatField(default=0)
    locked_until = FloatField(default=0)


class Setting(BaseModel):
    """Values generated once and kept (e.g. the secret key in a checkout)."""

    key = CharField(max_length=64, primary_key=True)
    value = TextField()


class RegistrationSample(BaseModel):
    """How many extensions were registered at a moment, for the dashboard's chart.

    Bindings are deleted when they expire, so the database keeps no history of
    registrations; sipd samples the live ones every few minutes instead
    (core/samples.py) and keeps about a week of samples.
    """

    taken_at = FloatField(index=True)
    extensions = IntegerField()  # distinct extensions with a live binding
    bindings = IntegerField()


class Service(BaseModel):
    """A daemon's own record of itself: what runs, since when, last seen alive.

    Written by the daemon (sipd at start, on its housekeeping timer, at a clean
    stop; core/services.py), read by the panel's dashboard. One row per daemon
    and host, so that several sipd nodes on one database each keep their own.
    """

    name = CharField(max_length=32)  # sipd
    host = CharField(max_length=255)  # socket.gethostname() of the daemon
    pid = IntegerField()
    version = CharField(max_length=64)  # core.version.code_version()
    started_at = FloatField()
    seen_at = FloatField()
    stopped_at = FloatField(null=True)  # set by a clean stop, cleared by a start
    detail = CharField(max_length=255, default="")  # e.g. where it listens
    # What phones must use to reach it (core/phone_settings.py; migration 0009):
    # the address it advertises and how it was found, its real ports and realm.
    sip_address = CharField(max_length=255, default="")
    address_source = CharField(max_length=128, default="")
    sip_port = IntegerField(null=True)  # UDP and TCP; None in a row older than 0009
    tls_port = IntegerField(null=True)  # None: no TLS listener
    realm = CharField(max_length=255, default="")

    class Meta:
        indexes = ((("name", "host"), True),)


OUTBOUND_PERMISSIONS = ("internal", "national", "international")


class Trunk(BaseModel):
    """A phone provider (issue 12; migration 0013).

    kind "register": sipd registers `username` (auth_user for the digest, ""
    = username) with `password` at host:port every `register_expires` seconds
    (sipd/trunks/). kind "ip": the provider is trusted by address, `match`
    holds its CIDRs (comma-separated) and requests from them need no
    challenge. host is an address or a name (the system resolver, DNS SRV
    where the name has it); port None = the transport's default (SRV first).
    REGISTER, OPTIONS and INVITE to one trunk go the same way: to
    outbound_proxy when set, else to host. caller_id_header: "from" (the
    caller ID goes in From) or "pai" (P-Asserted-Identity, From left as
    from_user). max_calls 0 = the policy's trunk_max_calls.
    keepalive_interval: OPTIONS every N s (0 = off); no answer marks it down.
    """

    KINDS = ("register", "ip")
    TRANSPORTS = ("udp", "tcp", "tls")

    name = CharField(max_length=64, unique=True)
    kind = CharField(max_length=16, default="register")
    host = CharField(max_length=255)
    port = IntegerField(null=True)
    transport = CharField(max_length=8, default="udp")
    username = CharField(max_length=128, default="")
    auth_user = CharField(max_length=128, default="")
    # A secret that must be sent, so kept as given (DESIGN.md, Secrets): never
    # shown again, logged or exported. The panel shows only whether one is set.
    password = CharField(max_length=255, default="")
    register = BooleanField(default=False)
    register_expires = IntegerField(default=3600)
    match = TextField(default="")
    outbound_proxy = CharField(max_length=255, default="")
    from_user = CharField(max_length=128, default="")
    from_domain = CharField(max_length=255, default="")
    caller_id = CharField(max_length=32, default="")
    caller_id_header = CharField(max_length=8, default="from")  # from | pai
    max_calls = IntegerField(default=0)
    keepalive_interval = IntegerField(default=30)
    enabled = BooleanField(default=True)
    created_at = FloatField(default=time.time)
    updated_at = FloatField(default=time.time)

    def match_cidrs(self) -> list[str]:
        return [part.strip() for part in self.match.split(",") if part.strip()]


class TrunkState(BaseModel):
    """What sipd last knew of a trunk; written only by sipd, shown by the panel.

    status: registering | registered | failed | unregistered (register trunks),
    up | down (keep-alive of any trunk), disabled. last_code/reason: the last
    response (or "no response from 198.51.100.7:5060 (udp)"); failures: in a
    row since the last success; next_attempt_at: when sipd tries again;
    reachable: the OPTIONS keep-alive's verdict; contact: the Contact sipd
    registered (inbound INVITEs to it belong to this trunk); address: the
    host:port/transport the last request went to.
    """

    trunk = ForeignKeyField(Trunk, primary_key=True, backref="state_rows", on_delete="CASCADE")
    status = CharField(max_length=16, default="unregistered")
    last_code = IntegerField(null=True)
    reason = CharField(max_length=255, default="")
    registered_at = FloatField(null=True)
    expires_at = FloatField(null=True)
    next_attempt_at = FloatField(null=True)
    failures = IntegerField(default=0)
    reachable = BooleanField(default=True)
    contact = CharField(max_length=255, default="")
    address = CharField(max_length=80, default="")
    updated_at = FloatField(default=time.time)


class InboundRoute(BaseModel):
    """An office number (DID) -> a destination (core/destinations.py). trunk None:
    the DID on any trunk; a route naming the trunk wins over one that does not."""

    did = CharField(max_length=32)
    trunk = ForeignKeyField(Trunk, null=True, backref="inbound_routes", on_delete="CASCADE")
    destination = CharField(max_length=64)
    # Its calls recorded, whoever answers (migration 0018, sipd/recording.py).
    record = BooleanField(default=False)
    created_at = FloatField(default=time.time)

    class Meta:
        indexes = ((("did", "trunk"), True),)


class OutboundRoute(BaseModel):
    """Ordered by position (first match wins); patterns: FreePBX dial patterns, one
    per line (core/dial_patterns.py); trunks tried in OutboundRouteTrunk order.
    emergency: always allowed, whatever the caller's permission, block or limits."""

    name = CharField(max_length=64, unique=True)
    position = IntegerField(default=0)
    patterns = TextField(default="")
    caller_id = CharField(max_length=32, default="")
    emergency = BooleanField(default=False)
    # The calls it sends out recorded (migration 0018, sipd/recording.py).
    record = BooleanField(default=False)
    created_at = FloatField(default=time.time)
    updated_at = FloatField(default=time.time)

    def pattern_list(self) -> list[str]:
        return [line.strip() for line in self.patterns.splitlines() if line.strip()]

    def trunk_names(self) -> list[str]:
        return [
            row.trunk.name
            for row in (
                OutboundRouteTrunk.select(OutboundRouteTrunk, Trunk)
                .join(Trunk)
                .where(OutboundRouteTrunk.route == self)
                .order_by(OutboundRouteTrunk.position)
            )
        ]


class OutboundRouteTrunk(BaseModel):
    route = ForeignKeyField(OutboundRoute, backref="trunk_rows", on_delete="CASCADE")
    trunk = ForeignKeyField(Trunk, backref="route_rows", on_delete="CASCADE")
    position = IntegerField()

    class Meta:
        indexes = ((("route", "trunk"), True),)


class OutboundPolicy(BaseModel):
    """Toll-fraud defaults, one row (id 1, made by migration 0013).

    home_country: the E.164 country code of the office ("998"); "" until the
    admin names it, and until then no international number is allowed at all.
    allowed_countries: other country codes that "international" extensions
    may call (comma-separated). The limits are the defaults for extensions
    whose own column is None, and for trunks whose max_calls is 0.
    """

    home_country = CharField(max_length=4, default="")
    allowed_countries = CharField(max_length=255, default="")
    max_calls = IntegerField(default=2)
    calls_per_hour = IntegerField(default=30)
    minutes_per_hour = IntegerField(default=120)
    trunk_max_calls = IntegerField(default=10)
    updated_at = FloatField(default=0)

    @classmethod
    def current(cls) -> OutboundPolicy:
        return cls.get_or_none(cls.id == 1) or cls(id=1)


class FraudEvent(BaseModel):
    """An outside call refused by a toll-fraud rule (the panel's page).

    rule: permission | country | blocked | max_calls | trunk_max_calls |
    calls_per_hour | minutes_per_hour; detail: the words the log and the
    reason phrase use."""

    created_at = FloatField(default=time.time, index=True)
    extension = CharField(max_length=64)
    number = CharField(max_length=64)
    rule = CharField(max_length=32)
    detail = CharField(max_length=255, default="")
    trunk = CharField(max_length=64, default="")
    source = CharField(max_length=80, default="")


class Mailbox(BaseModel):
    """An extension's voicemail box (issue 13; migration 0014, core/voicemail.py).

    Made with each new extension (enabled) and by `pbxctl ext voicemail N on`.
    pin_hash: the PIN's slow hash (werkzeug), never the PIN. greeting: the path of
    the owner's or admin's recording ("" = the standard prompt naming the
    number). email: where each new message is sent with its WAV ("" = none).
    language: the prompts' language (core/prompts.LANGUAGES; "" = en).
    """

    extension = ForeignKeyField(Extension, unique=True, backref="mailboxes", on_delete="CASCADE")
    enabled = BooleanField(default=True)
    pin_hash = CharField(max_length=255, default="")
    greeting = CharField(max_length=255, default="")
    email = CharField(max_length=255, default="")
    language = CharField(max_length=8, default="")
    created_at = FloatField(default=time.time)
    updated_at = FloatField(default=time.time)


class VoicemailMessage(BaseModel):
    """One message left in a mailbox: a WAV file (path, under PBX_VOICEMAIL_DIR)
    and this row. folder: new (not yet heard) | old (heard or saved).
    emailed_at / email_error: the e-mail of it (core/voicemail_mail.py), if any;
    email_tries / email_due_at: its schedule while it is still to be sent (NULL
    due: nothing to send), so that a restarted sipd sends it (migration 0017)."""

    FOLDERS = ("new", "old")

    mailbox = ForeignKeyField(Mailbox, backref="messages", on_delete="CASCADE")
    caller = CharField(max_length=64, default="")
    caller_name = CharField(max_length=100, default="")
    received = FloatField(default=time.time, index=True)
    seconds = FloatField(default=0)
    path = CharField(max_length=255)
    folder = CharField(max_length=8, default="new")
    heard_at = FloatField(null=True)
    emailed_at = FloatField(null=True)
    email_error = CharField(max_length=255, default="")
    email_tries = IntegerField(default=0)
    email_due_at = FloatField(null=True)


class Ivr(BaseModel):
    """An IVR menu (issue 13 item 3; migration 0015, core/ivr.py): its recording
    (prompt, relative to PBX_SOUNDS_DIR), its keys (IvrOption), what happens when
    the caller presses nothing (on_timeout) or a key that is no option
    (on_invalid) after `repeats` more tries ("" = goodbye and hang up).
    number: dialable there when set (None = only as the destination ivr:NAME).
    direct_dial: the caller may dial an extension's number instead of a key."""

    LANGUAGES = ("en", "uz", "ru")

    name = CharField(max_length=32, unique=True)
    number = CharField(max_length=32, null=True, unique=True)
    prompt = CharField(max_length=255, default="")
    language = CharField(max_length=8, default="en")
    direct_dial = BooleanField(default=False)
    timeout = IntegerField(default=5)
    repeats = IntegerField(default=2)
    on_timeout = CharField(max_length=64, default="")
    on_invalid = CharField(max_length=64, default="")
    created_at = FloatField(default=time.time)
    updated_at = FloatField(default=time.time)


class IvrOption(BaseModel):
    """A key of a menu (0-9, *, #) and where it leads (core/destinations.py)."""

    ivr = ForeignKeyField(Ivr, backref="options", on_delete="CASCADE")
    digit = CharField(max_length=1)
    destination = CharField(max_length=64, index=True)

    class Meta:
        indexes = ((("ivr", "digit"), True),)


class Schedule(BaseModel):
    """Business hours (issue 13 item 3; core/hours.py decides, core/ivr.py writes):
    calls go to in_destination while open, out_destination otherwise. timezone
    "" = PBX_TIMEZONE. number: dialable there when set."""

    name = CharField(max_length=32, unique=True)
    number = CharField(max_length=32, null=True, unique=True)
    in_destination = CharField(max_length=64)
    out_destination = CharField(max_length=64)
    timezone = CharField(max_length=64, default="")
    created_at = FloatField(default=time.time)
    updated_at = FloatField(default=time.time)


class ScheduleRule(BaseModel):
    """One opening rule of a schedule, as core/hours.py writes it ("mon-fri 09:00-18:00")."""

    schedule = ForeignKeyField(Schedule, backref="rules", on_delete="CASCADE")
    position = IntegerField(default=0)
    rule = CharField(max_length=64)


class ScheduleHoliday(BaseModel):
    """A day a schedule is closed all day (YYYY-MM-DD, the schedule's local date)."""

    schedule = ForeignKeyField(Schedule, backref="holidays", on_delete="CASCADE")
    day = CharField(max_length=10)

    class Meta:
        indexes = ((("schedule", "day"), True),)


class SchemaVersion(BaseModel):
    version = IntegerField(primary_key=True)
    applied_at = FloatField(default=time.time)


ALL_MODELS = [
    Admin, Extension, Binding, AuthAttempt, Call, Ban, AuditEntry, LoginThrottle,
    Setting, SchemaVersion, RegistrationSample, Service, RingGroup, RingGroupMember, CallEvent,
    Trunk, TrunkState, InboundRoute, OutboundRoute, OutboundRouteTrunk, OutboundPolicy,
    FraudEvent, Mailbox, VoicemailMessage, Ivr, IvrOption, Schedule, ScheduleRule,
    ScheduleHoliday,
]

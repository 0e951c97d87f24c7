"""PBX_* settings, read from the environment (on a server: /etc/pbx/pbx.env).

Both processes read the same names, see DESIGN.md. A bad value is a
`ConfigError` with one line naming the variable; callers turn it into a
message on stderr and a non-zero exit.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path

from core import credentials

ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A setting has a value we cannot use."""


def parse_hostport(value: str, name: str, default_port: int) -> tuple[str, int]:
    """'host:port', '[v6]:port', 'host' or ':port' -> (host, port)."""
    value = value.strip()
    host, port = value, ""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":")
    elif value.count(":") == 1:
        host, port = value.split(":")
    try:
        port_number = int(port) if port else default_port
    except ValueError:
        raise ConfigError(f"{name}: port must be a number, got {port!r}") from None
    if not 0 <= port_number <= 65535:
        raise ConfigError(f"{name}: port {port_number} is out of range")
    return host or "0.0.0.0", port_number


def parse_port_range(value: str, name: str) -> tuple[int, int]:
    low, sep, high = value.partition("-")
    try:
        first, last = int(low), int(high if sep else low)
    except ValueError:
        raise ConfigError(f"{name}: expected LOW-HIGH, got {value!r}") from None
    if not (1024 <= first <= last <= 65535):
        raise ConfigError(f"{name}: {value!r} is not a range within 1024-65535")
    return first, last


def parse_networks(value: str, name: str) -> tuple[ipaddress._BaseNetwork, ...]:
    networks = []
    for item in value.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{name}: {item!r} is not a CIDR network") from None
    return tuple(networks)


def parse_algorithms(value: str) -> tuple[str, ...]:
    try:
        return credentials.parse_algorithms(value)
    except ValueError as error:
        raise ConfigError(f"PBX_DIGEST_ALGORITHMS: {error}") from None


# User-Agents of SIP scanners (matched as words, case-insensitively; see
# sipd/security.py). "PortSIP VoIP SDK" is left out: real softphones are built on it.
SCANNER_AGENTS = (
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "VaxSIPUserAgent",
    "sundayddr",
    "iWar",
    "SIVuS",
    "Gulp",
    "sipv",
    "smap",
    "pplsip",
    "siparmyknife",
)


def parse_agents(value: str | None) -> tuple[str, ...]:
    if value is None:
        return SCANNER_AGENTS
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    db_path: str
    sip_host: str
    sip_port: int
    realm: str
    public_address: str | None
    rtp_ports: tuple[int, int]
    panel_host: str
    panel_port: int
    secret_key: str | None
    trusted_networks: tuple = field(default_factory=tuple)
    log_level: str = "info"
    log_file: str | None = None
    # Registrar policy (RFC 3261 §10.3 leaves these to the registrar).
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 300
    max_contacts: int = 5
    nonce_lifetime: int = 300
    # Calls (sipd/b2bua/): ring timeout, dead-media and maximum-duration hang-ups.
    ring_timeout: int = 30
    media_timeout: int = 60
    max_call_duration: int = 4 * 3600
    max_calls: int = 500
    # A call held both ways (no RTP may flow in either direction) is ended after
    # this many seconds; 0: never (PBX_CALL_HOLD_TIMEOUT, see sipd/b2bua/bridge.py).
    call_hold_timeout: int = 3600
    # Digest algorithms offered, most preferred first (see sipd/sip/digest.py).
    # Offered to the phones of an extension without its own choice (core/credentials.py).
    digest_algorithms: tuple[str, ...] = credentials.DEFAULT_ALGORITHMS
    # sipd's state directory (logs in a checkout) and its local control socket.
    run_dir: str = ""
    control_socket: str = ""
    # True on a deployed server, where a missing secret is an error rather
    # than something to generate into the database.
    server: bool = False
    # SIP over TLS (off when tls_port is None), and sipd's defences (sipd/security.py).
    sip_tls_host: str = "0.0.0.0"
    sip_tls_port: int | None = None
    tls_cert: str = ""
    tls_key: str = ""
    # More CAs (PEM) trusted for providers' TLS certificates than the system's (sipd/tls.py).
    trunk_tls_ca: str = ""
    ban_threshold: int = 5
    ban_window: int = 600
    ban_time: int = 3600
    scanner_agents: tuple[str, ...] = ()
    rate_limit: int = 100
    rate_burst: int = 400
    max_tcp_per_source: int = 100
    tcp_read_timeout: int = 10
    nft_ban_command: str = ""
    # The DNS servers asked for a trunk provider's SRV records (sipd/trunks/srv.py);
    # empty: those of /etc/resolv.conf.
    dns_servers: tuple[tuple[str, int], ...] = ()
    # Registration worker processes beside the main sipd (sipd/workers.py).
    sip_workers: int = 0
    # How long sipd waits for another process's write lock before it answers
    # 503 (sipd/dblock.py); the wait never stops its event loop.
    db_lock_wait: float = 5.0
    # Seconds between OPTIONS probes of each binding (sipd/qualifier.py); 0: off.
    qualify_interval: int = 60
    # Prompts (core/prompts.py): built at install by `pbxctl prompts build` into
    # prompts_dir; an admin's upload of the same name in sounds_dir wins.
    prompts_dir: str = ""
    sounds_dir: str = ""
    # The wall clock business hours are judged by (core/hours.py; IANA name).
    timezone: str = "UTC"
    # What a held party hears (sipd/b2bua/music.py): a WAV, any rate (8 kHz mono
    # µ-law plays as it is); the default is the tune shipped with sipd.
    moh_file: str = ""
    # Call recording (sipd/recording.py): where the WAVs go, and the days they
    # are kept (0: kept until an admin removes them).
    recording_dir: str = ""
    recording_days: int = 90
    # The language of "This call is recorded", played to both phones as a recorded
    # call starts (the prompt call-recorded, core/prompts.py); "" = not announced.
    recording_announce: str = ""
    # Voicemail (core/voicemail.py): where messages are kept, the longest message.
    voicemail_dir: str = ""
    voicemail_max_seconds: int = 180
    # Voicemail by e-mail (core/voicemail_mail.py); smtp_host "" = no e-mail.
    # smtp_starttls: "auto" (when the server offers it) | "yes" (required) | "no".
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = ""
    smtp_starttls: str = "auto"


def parse_workers(raw: str, cpus: int | None = None) -> int:
    """PBX_SIP_WORKERS: a number (0-16), or "auto": one per core beyond the first,
    at most 3, so none on a one-core server, where they would only compete."""
    value = raw.strip().lower()
    if value in ("", "auto"):
        return max(0, min((cpus or os.cpu_count() or 1) - 1, 3))
    if not value.isdigit() or int(value) > 16:
        raise ConfigError(f"PBX_SIP_WORKERS: expected auto or a number from 0 to 16, got {raw!r}")
    return int(value)


def parse_seconds(raw: str, name: str, low: float, high: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:  # also NaN
        raise ConfigError(f"{name}: expected seconds from {low:g} to {high:g}, got {raw!r}")
    return value


DEFAULT_MOH = ROOT / "sipd" / "media" / "sounds" / "moh-default.wav"


def parse_moh_file(value: str) -> str:
    """PBX_MOH_FILE: an absolute path to a .wav file ("" = the shipped tune).
    Whether it plays is seen when a call is held (and logged then)."""
    value = value.strip()
    if not value:
        return str(DEFAULT_MOH)
    if not value.startswith("/") or not value.lower().endswith(".wav"):
        raise ConfigError(f"PBX_MOH_FILE must be an absolute path to a .wav file, not {value!r}")
    return value


def parse_timezone(name: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"PBX_TIMEZONE: {name!r} is not a time zone (e.g. Asia/Tashkent)"
        ) from None
    return name


def parse_announce(raw: str) -> str:
    """PBX_RECORDING_ANNOUNCE: a prompt language, or empty / no / off for none."""
    from core.prompts import LANGUAGES  # noqa: PLC0415 - prompts imports this module

    value = raw.strip().lower()
    if value in ("", "no", "off"):
        return ""
    if value not in LANGUAGES:
        raise ConfigError(
            f"PBX_RECORDING_ANNOUNCE: expected {', '.join(LANGUAGES)} or empty"
            f" (no announcement), got {raw!r}"
        )
    return value


def parse_starttls(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("auto", "yes", "no"):
        raise ConfigError(f"PBX_SMTP_STARTTLS: expected auto, yes or no, got {raw!r}")
    return value


def parse_sender(raw: str, name: str) -> str:
    """An e-mail address (PBX_SMTP_FROM): one @, no spaces or header breaks."""
    value = raw.strip()
    if value and (value.count("@") != 1 or any(c.isspace() or c in "<>,;" for c in value)
                  or value.startswith("@") or value.endswith("@")):
        raise ConfigError(f"{name}: {raw!r} is not an e-mail address")
    return value


def load_settings(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    var = ROOT / "var"
    sip_host, sip_port = parse_hostport(
        env.get("PBX_SIP_LISTEN", "0.0.0.0:5060"), "PBX_SIP_LISTEN", 5060
    )
    panel_host, panel_port = parse_hostport(
        env.get("PBX_PANEL_LISTEN", "127.0.0.1:8080"), "PBX_PANEL_LISTEN", 8080
    )
    level = env.get("PBX_LOG_LEVEL", "info").lower()
    if level not in {"debug", "info", "warning", "error"}:
        raise ConfigError(f"PBX_LOG_LEVEL: expected debug, info, warning or error, got {level!r}")
    settings = Settings(
        db_path=env.get("PBX_DB") or str(var / "pbx.db"),
        sip_host=sip_host,
        sip_port=sip_port,
        realm=env.get("PBX_REALM") or socket.gethostname(),
        public_address=env.get("PBX_PUBLIC_ADDRESS") or None,
        rtp_ports=parse_port_range(env.get("PBX_RTP_PORTS", "10000-20000"), "PBX_RTP_PORTS"),
        panel_host=panel_host,
        panel_port=panel_port,
        secret_key=env.get("PBX_SECRET_KEY") or None,
        trusted_networks=parse_networks(
            env.get("PBX_TRUSTED_NETWORKS", ""), "PBX_TRUSTED_NETWORKS"
        ),
        log_level=level,
        log_file=env.get("PBX_LOG_FILE") or None,
        min_expires=_int(env, "PBX_MIN_EXPIRES", 60, 1),
        max_expires=_int(env, "PBX_MAX_EXPIRES", 3600, 1),
        default_expires=_int(env, "PBX_DEFAULT_EXPIRES", 300, 1),
        max_contacts=_int(env, "PBX_MAX_CONTACTS", 5, 1),
        nonce_lifetime=_int(env, "PBX_NONCE_LIFETIME", 300, 10),
        ring_timeout=_int(env, "PBX_RING_TIMEOUT", 30, 1),
        media_timeout=_int(env, "PBX_MEDIA_TIMEOUT", 60, 5),
        max_call_duration=_int(env, "PBX_MAX_CALL_DURATION", 4 * 3600, 10),
        max_calls=_int(env, "PBX_MAX_CALLS", 500, 1),
        call_hold_timeout=_int(env, "PBX_CALL_HOLD_TIMEOUT", 3600, 0),
        digest_algorithms=parse_algorithms(env.get("PBX_DIGEST_ALGORITHMS", "MD5")),
        sip_workers=parse_workers(env.get("PBX_SIP_WORKERS", "auto")),
        db_lock_wait=parse_seconds(env.get("PBX_DB_LOCK_WAIT") or "5", "PBX_DB_LOCK_WAIT", 0.1, 60),
        qualify_interval=_int(env, "PBX_QUALIFY_INTERVAL", 60, 0),
        run_dir=env.get("PBX_RUN_DIR") or str(var),
        prompts_dir=env.get("PBX_PROMPTS_DIR") or str(var / "prompts"),
        sounds_dir=env.get("PBX_SOUNDS_DIR") or str(var / "sounds"),
        timezone=parse_timezone(env.get("PBX_TIMEZONE") or "UTC"),
        moh_file=parse_moh_file(env.get("PBX_MOH_FILE", "")),
        recording_dir=env.get("PBX_RECORDING_DIR") or str(var / "recordings"),
        recording_days=_int(env, "PBX_RECORDING_DAYS", 90, 0),
        recording_announce=parse_announce(env.get("PBX_RECORDING_ANNOUNCE", "")),
        voicemail_dir=env.get("PBX_VOICEMAIL_DIR") or str(var / "voicemail"),
        voicemail_max_seconds=_int(env, "PBX_VOICEMAIL_MAX_SECONDS", 180, 5),
        smtp_host=env.get("PBX_SMTP_HOST", "").strip(),
        smtp_port=_int(env, "PBX_SMTP_PORT", 25, 1),
        smtp_user=env.get("PBX_SMTP_USER", ""),
        smtp_password=env.get("PBX_SMTP_PASSWORD", ""),
        smtp_from=parse_sender(env.get("PBX_SMTP_FROM", ""), "PBX_SMTP_FROM")
        or f"pbx@{socket.gethostname()}",
        smtp_starttls=parse_starttls(env.get("PBX_SMTP_STARTTLS") or "auto"),
        control_socket=env.get("PBX_CONTROL_SOCKET")
        or str(Path(env.get("PBX_RUN_DIR") or str(var)) / "sipd.sock"),
        server=env.get("PBX_SERVER", "") in {"1", "true", "yes"},
        tls_cert=env.get("PBX_TLS_CERT", ""),
        tls_key=env.get("PBX_TLS_KEY", ""),
        trunk_tls_ca=env.get("PBX_TRUNK_TLS_CA", "").strip(),
        ban_threshold=_int(env, "PBX_BAN_THRESHOLD", 5),
        ban_window=_int(env, "PBX_BAN_WINDOW", 600, 1),
        ban_time=_int(env, "PBX_BAN_TIME", 3600, 1),
        scanner_agents=parse_agents(env.get("PBX_SCANNER_AGENTS")),
        rate_limit=_int(env, "PBX_RATE_LIMIT", 100),
        rate_burst=_int(env, "PBX_RATE_BURST", 400, 1),
        max_tcp_per_source=_int(env, "PBX_MAX_TCP_PER_SOURCE", 100),
        tcp_read_timeout=_int(env, "PBX_TCP_READ_TIMEOUT", 10, 1),
        nft_ban_command=env.get("PBX_NFT_BAN_COMMAND", "").strip(),
        dns_servers=tuple(parse_hostport(item, "PBX_DNS_SERVERS", 53)
                          for item in env.get("PBX_DNS_SERVERS", "").split(",") if item.strip()),
    )
    if env.get("PBX_SIP_TLS_LISTEN"):
        tls_host, tls_port = parse_hostport(env["PBX_SIP_TLS_LISTEN"], "PBX_SIP_TLS_LISTEN", 5061)
        if not settings.tls_cert or not settings.tls_key:
            raise ConfigError("PBX_SIP_TLS_LISTEN needs PBX_TLS_CERT and PBX_TLS_KEY")
        settings = replace(settings, sip_tls_host=tls_host, sip_tls_port=tls_port)
    if settings.smtp_port > 65535:
        raise ConfigError(f"PBX_SMTP_PORT: port {settings.smtp_port} is out of range")
    if settings.voicemail_max_seconds > 3600:
        raise ConfigError("PBX_VOICEMAIL_MAX_SECONDS: at most 3600 (an hour), got "
                          f"{settings.voicemail_max_seconds}")
    if settings.min_expires > settings.max_expires:
        raise ConfigError("PBX_MIN_EXPIRES is larger than PBX_MAX_EXPIRES")
    if settings.server and not settings.secret_key:
        raise ConfigError("PBX_SECRET_KEY must be set on a server (see /etc/pbx/pbx.env)")
    if settings.secret_key is not None and len(settings.secret_key) < 32:
        raise ConfigError("PBX_SECRET_KEY must be at least 32 characters")
    return settings

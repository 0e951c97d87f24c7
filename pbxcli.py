"""pbxctl: the one command-line entry point (see DESIGN.md, "Command line").

Every error is one line on stderr and a non-zero exit; every change runs in
one transaction, so nothing is half-written.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pbxcli_ivr
import pbxcli_outbound
import pbxcli_routing
import pbxcli_trunks
import pbxcli_voicemail
from core import accounts
from core.config import ROOT, ConfigError, Settings, load_settings
from pbxcli_common import CliError
from pbxcli_common import audit_change as _audit
from pbxcli_common import open_db as _db
from pbxcli_common import table as _table

EXIT_ERROR = 1
# argparse's own status for a command line it cannot read.
EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line on stderr like every other error.

    argparse prints the whole usage and then the error; here the error names
    the command and where its help is. Subcommand parsers are made of this
    class too (add_subparsers uses the parent's class), and --help is untouched.
    """

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _ago(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


# -- init and admins ----------------------------------------------------------------


def cmd_init(args, settings: Settings) -> int:
    from core import migrations
    from core.database import secret_key
    from core.models import Admin

    database = _db(settings)
    secret_key(settings)
    version = migrations.current_version(database)
    print(f"Database {settings.db_path} ready (schema version {version})")
    if args.first_admin:
        if Admin.select().count() == 0:
            with database.atomic():
                admin, password, _ = accounts.create_admin("admin", role="admin")
                _audit("admin.create", admin.username, "role admin, first admin")
            print(f"First admin: user {admin.username}, password {password}")
            print("This password is shown once; change it in the panel.")
        else:
            print("An admin exists already; reset a password with: pbxctl admin passwd USER")
    return 0


def cmd_admin_add(args, settings: Settings) -> int:
    with _db(settings).atomic():
        admin, password, generated = accounts.create_admin(args.user, args.password, args.role)
        _audit("admin.create", admin.username, f"role {admin.role}")
    print(f"Admin {admin.username} ({admin.role}) created")
    if generated:
        print(f"Password (shown once): {password}")
    return 0


def cmd_admin_passwd(args, settings: Settings) -> int:
    with _db(settings).atomic():
        admin, password, generated = accounts.set_admin_password(args.user, args.password)
        _audit("admin.password", admin.username,
               "generated password" if generated else "password set")
    print(f"Password of admin {admin.username} changed; their panel sessions have ended")
    if generated:
        print(f"Password (shown once): {password}")
    return 0


def cmd_admin_enable(args, settings: Settings) -> int:
    enabled = args.admin_command == "enable"
    with _db(settings).atomic():
        before = accounts.get_admin(args.user)
        admin = accounts.set_admin_enabled(args.user, enabled)
        if before.enabled != enabled:
            _audit("admin.enable" if enabled else "admin.disable", admin.username)
    if enabled:
        print(f"Admin {admin.username} enabled")
    else:
        print(f"Admin {admin.username} disabled; their panel sessions have ended")
    return 0


def cmd_admin_list(args, settings: Settings) -> int:
    from core.models import Admin

    _db(settings)
    rows = [("USER", "ROLE", "STATE", "LAST LOGIN")]
    for admin in Admin.select().order_by(Admin.username):
        rows.append((admin.username, admin.role, "enabled" if admin.enabled else "disabled",
                     _stamp(admin.last_login_at) if admin.last_login_at else "never"))
    _table(rows)
    return 0


# -- extensions ---------------------------------------------------------------------


def _print_secret(number: str, password: str, generated: bool, settings: Settings) -> None:
    """What the phone needs, from the running sipd's record (core/phone_settings.py)."""
    from core import phone_settings

    if generated:
        print(f"Password (shown once): {password}")
    phones = phone_settings.current(settings)
    tls = f", TLS port {phones.tls_port}" if phones.tls_port else ""
    print(
        f"Phone settings: server {phones.host}, port {phones.port}{tls}, transport "
        f"{phones.transports}, user {number}, auth user {number}, domain {phones.host}"
    )
    _print_address_notes(phones)


def _print_phones_use(settings: Settings) -> None:
    from core import phone_settings

    phones = phone_settings.current(settings)
    tls = f", TLS {phones.tls_port}" if phones.tls_port else ""
    print(f"Phones use: {phones.server} ({phones.transports}{tls})")
    _print_address_notes(phones)


def _print_address_notes(phones) -> None:
    print(f"Address from: {phones.source}")
    for line in ([phones.note] if phones.note else []) + phones.warnings:
        print(f"Note: {line}")


def cmd_ext_add(args, settings: Settings) -> int:
    with _db(settings).atomic():
        extension, password, generated = accounts.create_extension(
            args.number,
            settings.realm,
            name=args.name or "",
            password=args.password,
            generate=args.generate,
            max_calls=accounts.DEFAULT_MAX_CALLS if args.max_calls is None else args.max_calls,
        )
        _audit("extension.create", extension.number, ", ".join(filter(None, [
            f"name {extension.name!r}" if extension.name else "",
            "generated password" if generated else "password set",
            f"call limit {extension.max_calls}" if args.max_calls is not None else "",
        ])))
    print(f"Extension {extension.number} created")
    _print_secret(extension.number, password, generated, settings)
    print(f"Voicemail PIN (shown once): {extension.voicemail_pin}")
    return 0


def cmd_ext_passwd(args, settings: Settings) -> int:
    with _db(settings).atomic():
        extension, password, generated = accounts.set_password(
            args.number, settings.realm, password=args.password, generate=args.generate
        )
        _audit("extension.password", extension.number,
               "generated password" if generated else "password set")
    print(f"Password of extension {extension.number} changed")
    _print_secret(extension.number, password, generated, settings)
    return 0


def cmd_ext_set(args, settings: Settings) -> int:
    """Change an extension's settings other than its password (its call limit)."""
    with _db(settings).atomic():
        before = accounts.get_extension(args.number)
        extension = accounts.update_extension(before.number, max_calls=args.max_calls)
        _audit("extension.edit", extension.number,
               f"call limit {before.max_calls} -> {extension.max_calls}")
    print(f"Extension {extension.number}: at most {extension.max_calls} calls at once")
    return 0


def cmd_ext_digest(args, settings: Settings) -> int:
    """Show or set the digest challenges an extension's phones get (core/credentials.py)."""
    with _db(settings).atomic():
        before = accounts.get_extension(args.number)
        extension = before
        if args.algorithms is not None:
            extension = accounts.set_digest_algorithms(before.number, args.algorithms)
            _audit("extension.digest", extension.number,
                   f"{before.digest_algorithms or 'default'} -> "
                   f"{extension.digest_algorithms or 'default'}")
    if extension.digest_algorithms:
        offered = extension.digest_algorithms.replace(",", ", ")
        whose = "its own choice"
    else:
        offered = ", ".join(settings.digest_algorithms)
        whose = "the PBX's PBX_DIGEST_ALGORITHMS"
    print(f"Extension {extension.number}: phones are challenged with {offered} ({whose})")
    return 0


def cmd_ext_list(args, settings: Settings) -> int:
    from core.forwarding import describe
    from core.models import Binding, Extension

    _db(settings)
    now = time.time()
    live: dict[int, list] = {}
    for binding in Binding.live(now).order_by(Binding.registered_at):
        live.setdefault(binding.extension_id, []).append(binding)
    rows = [("NUMBER", "NAME", "STATE", "DND / FORWARDS", "CONTACT", "FROM", "EXPIRES IN")]
    for extension in Extension.select().order_by(Extension.number):
        bindings = live.get(extension.id, [])
        state = (
            "disabled" if not extension.enabled else ("registered" if bindings else "unregistered")
        )
        routing = describe(extension) or "-"
        if not bindings:
            rows.append((extension.number, extension.name, state, routing, "", "", ""))
        for index, b in enumerate(bindings):
            rows.append(
                (
                    extension.number if index == 0 else "",
                    extension.name if index == 0 else "",
                    state if index == 0 else "",
                    routing if index == 0 else "",
                    b.contact,
                    f"{b.source_host}:{b.source_port}/{b.transport}",
                    _ago(b.expires_at - now),
                )
            )
    _table(rows)
    return 0


def cmd_ext_rm(args, settings: Settings) -> int:
    with _db(settings).atomic():
        name = accounts.get_extension(args.number).name
        changed = accounts.delete_extension(args.number)
        _audit("extension.delete", args.number.strip(), "; ".join(filter(None, [
            f"name {name!r}" if name else "", ", ".join(changed)])))
    from core import voicemail

    voicemail.delete_files(args.number.strip(), settings)
    print(f"Extension {args.number} deleted")
    for line in changed:
        print(f"Also: {line}")
    return 0


def cmd_ext_import(args, settings: Settings) -> int:
    """All rows or none (core/extension_csv.py): checked first, written in one short
    transaction so that sipd is kept waiting for well under a second."""
    from core import audit, extension_csv

    data = extension_csv.read_file(args.file)
    name = os.path.basename(args.file)
    rows = extension_csv.parse(data, name)
    _db(settings)
    ready = extension_csv.check(rows, settings.realm, extension_csv.existing_numbers(), name,
                                groups=extension_csv.group_numbers())
    extension_csv.write(ready, audit.cli_actor(), audit.cli_source(), name)
    print(f"Imported {len(ready)} extension{'' if len(ready) == 1 else 's'}")
    for extension in ready:
        if extension.generated:
            print(f"{extension.number}: generated password (shown once): {extension.password}")
    return 0


# -- daemons ------------------------------------------------------------------------


def cmd_sipd(args, settings: Settings) -> int:
    return _exec_module("sipd", [])


def cmd_panel(args, settings: Settings) -> int:
    from gevent import monkey

    monkey.patch_all()
    from core import logs

    logs.setup(settings.log_level, settings.log_file, "panel")
    from app.server import serve

    return serve(settings) or 0


def _exec_module(module: str, extra: list[str]) -> int:
    os.execv(sys.executable, [sys.executable, "-m", module, *extra])
    return 0  # not reached


def cmd_run(args, settings: Settings) -> int:
    """sipd and the panel in the foreground, each started again if it dies
    (core/supervisor.py); Ctrl-C or SIGTERM stops both."""
    from core import supervisor

    log_dir = Path(settings.run_dir) / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def spec(name: str, command: list[str]) -> supervisor.Spec:
        log_file = str(log_dir / f"{name}.log")
        return supervisor.Spec(name, command, dict(env, PBX_LOG_FILE=log_file), log_file)

    specs = [
        spec("sipd", [sys.executable, "-m", "sipd"]),
        spec("panel", [sys.executable, "-m", "pbxcli", "panel"]),
    ]
    banner = (
        f"PBX running: SIP on {settings.sip_host}:{settings.sip_port} (UDP and TCP), "
        f"panel on http://{settings.panel_host}:{settings.panel_port} - Ctrl-C stops both"
    )
    return supervisor.run(specs, str(ROOT), banner)


def cmd_status(args, settings: Settings) -> int:
    from core.models import Binding, Extension

    _db(settings)
    now = time.time()
    live = Binding.live(now)
    registered = live.select(Binding.extension).distinct().count()
    print(f"Database: {settings.db_path}")
    print(
        f"Extensions: {Extension.select().count()} "
        f"({Extension.select().where(~Extension.enabled).count()} disabled)"
    )
    print(f"Registered: {registered} extensions, {live.count()} bindings")
    unreachable = live.where(Binding.unreachable_since.is_null(False)).count()
    if unreachable:
        print(f"Unreachable: {unreachable} bindings (no answer to sipd's OPTIONS; calls do not"
              " ring them)")
    _print_phones_use(settings)
    for binding in live.order_by(Binding.aor):
        state = ""
        if binding.unreachable_since is not None:
            state = f", UNREACHABLE for {_ago(now - binding.unreachable_since)}"
        print(
            f"  {binding.aor} -> {binding.contact} from {binding.source_host}:"
            f"{binding.source_port}/{binding.transport} ({binding.user_agent or '-'}), "
            f"expires in {_ago(binding.expires_at - now)}{state}"
        )
    return 0


def cmd_reg_rm(args, settings: Settings) -> int:
    from core import audit, registrations

    _db(settings)
    try:
        dropped = registrations.drop(audit.cli_actor(), audit.cli_source(), number=args.number,
                                     contact=None if args.all else args.contact)
    except registrations.RegistrationError as error:
        raise CliError(str(error)) from None
    for binding in dropped:
        print(f"Registration of {binding.extension.number} dropped: {binding.contact} from"
              f" {binding.source_host}:{binding.source_port}/{binding.transport}")
    return 0


def _stamp(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def cmd_calls(args, settings: Settings) -> int:
    """The last calls (oldest first, so the newest is next to the prompt), or the live ones."""
    from core.models import Call

    _db(settings)
    if args.last < 1:
        raise CliError("--last must be at least 1")
    if args.hangup is not None:
        return _hangup(args.hangup, settings)
    now = time.time()
    if args.active:
        calls = list(Call.active())
        if not calls:
            print("No calls right now")
            return 0
        # ID: what names a live call (pbxctl calls --hangup ID); a Call-ID may repeat.
        rows = [("ID", "STARTED", "CALLER", "CALLEE", "STATE", "DURATION", "CALLER MEDIA",
                 "CALLEE MEDIA", "CODEC")]
        for call in calls:
            since = call.answered_at if call.answered_at is not None else call.started_at
            rows.append((call.id, _stamp(call.started_at), call.caller, call.callee,
                         "talking" if call.state == "answered" else call.state,
                         _clock(now - since), call.caller_media or "-",
                         call.callee_media or "-", call.codec or "-"))
        _table(rows)
        return 0
    query = Call.select().order_by(Call.started_at.desc(), Call.id.desc()).limit(args.last)
    calls = list(query)[::-1]
    if not calls:
        print("No calls yet")
        return 0
    # The panel's words for the same columns (its call history page).
    rows = [("START", "CALLER", "CALLEE", "TALK TIME", "OUTCOME", "HUNG UP BY", "SIP STATUS",
             "REASON", "RECORDING")]
    for call in calls:
        live = call.ended_at is None
        rows.append((
            _stamp(call.started_at), call.caller, call.callee,
            _clock(call.talk_seconds) if call.answered_at is not None else "-",
            ("talking" if call.state == "answered" else call.state) + " (live)" if live
            else call.disposition or "-",
            call.hangup_by or "-", call.sip_status if call.sip_status is not None else "-",
            call.reason or "-",
            # Under PBX_RECORDING_DIR (sipd/recording.py names it on the row).
            call.recording or "-",
        ))
    _table(rows)
    return 0


def _hangup(call_id: int, settings: Settings) -> int:
    """Hang up live call `call_id` (its row id, as `calls --active` shows it) through sipd."""
    from core import control
    from core.models import Call, db

    call = Call.get_or_none(Call.id == call_id)
    if call is None or call.ended_at is not None:
        raise CliError(f"no live call {call_id} (pbxctl calls --active lists them)")
    try:
        control.send(settings.control_socket, {"command": "hangup", "id": call.id})
    except control.ControlError as error:
        raise CliError(f"could not hang up call {call.id}: {error}") from None
    with db.atomic():
        _audit("call.hangup", f"{call.caller} -> {call.callee}",
               f"call {call.id}, Call-ID {call.call_id}")
    print(f"Call {call.id} ({call.caller} -> {call.callee}) is being hung up")
    return 0


def cmd_logs(args, settings: Settings) -> int:
    names = [args.service] if args.service else ["sipd", "panel"]
    files = [Path(settings.run_dir) / "log" / f"{name}.log" for name in names]
    existing = [str(f) for f in files if f.exists()]
    if not existing:
        raise CliError(
            f"no log files yet in {Path(settings.run_dir) / 'log'} (start with pbxctl run)"
        )
    command = ["tail", "-n", str(args.lines)] + (["-F"] if args.follow else []) + existing
    os.execvp("tail", command)
    return 0


# -- bans ---------------------------------------------------------------------------


def cmd_ban_list(args, settings: Settings) -> int:
    from core import bans
    from core.models import db

    _db(settings)
    now = time.time()
    conn = db.connection()
    rows = bans.history(conn, limit=args.last) if args.all else bans.active(conn, now)
    if not rows:
        print("No address is banned" if not args.all else "No bans yet")
        return 0
    table = [("ADDRESS", "STATE", "REASON", "OFFENCE", "BANNED", "EXPIRES IN")]
    for ban in rows:
        if ban.lifted_at is not None:
            state = f"lifted by {ban.lifted_by or '?'}"
        elif ban.expires_at <= now:
            state = "expired"
        else:
            state = "banned"
        table.append(
            (
                ban.address,
                state,
                ban.reason,
                str(ban.offences),
                time.strftime("%Y-%m-%d %H:%M", time.localtime(ban.created_at)),
                _ago(ban.expires_at - now) if state == "banned" else "",
            )
        )
    _table(table)
    return 0


def _ban_seconds(value: str) -> int:
    from core import bans

    try:
        seconds = int(value)
    except ValueError:
        raise CliError(f"--time: {value!r} is not a number of seconds") from None
    if not 1 <= seconds <= bans.MAX_TIME:
        raise CliError(f"--time: expected 1 to {bans.MAX_TIME} seconds (30 days), got {seconds}")
    return seconds


def _ban_reason(text: str) -> str:
    reason = " ".join(text.split())
    if not reason:
        raise CliError("--reason: say why (or leave it out)")
    if len(reason) > 200 or not reason.isprintable():
        raise CliError("--reason: at most 200 printable characters")
    return reason


def cmd_ban_add(args, settings: Settings) -> int:
    """Ban an address by hand: a row of the `ban` table, which the running sipd
    reads within a second (core/bans.py), exactly as it reads a lift."""
    import ipaddress

    from core import bans
    from core.models import db

    seconds = settings.ban_time if args.time is None else _ban_seconds(args.time)
    reason = _ban_reason(args.reason) if args.reason is not None else "banned by hand"
    try:
        address = bans.normalize(args.address)
    except bans.BanError as error:
        raise CliError(str(error)) from None
    # sipd never bans these (docs/security.md); a hand-made ban would contradict the setting.
    ip = ipaddress.ip_address(address)
    if any(ip in network for network in settings.trusted_networks):
        raise CliError(f"{address} is in PBX_TRUSTED_NETWORKS, which are never banned")
    database = _db(settings)
    now = time.time()
    with database.atomic():
        conn = db.connection()
        until = bans.active_until(conn, now).get(address)
        if until is not None:
            raise CliError(f"{address} is banned already (for {_ago(until - now)} more); "
                           "pbxctl ban rm it first to ban it anew")
        offences = bans.previous_offences(conn, address, now) + 1
        bans.add(conn, address, reason, 0, offences, now, now + seconds)
        _audit("ban.add", address, f"{seconds} s: {reason}")
    print(f"Banned {address} for {seconds} s ({reason}); sipd drops what it sends within a second")
    return 0


def cmd_ban_rm(args, settings: Settings) -> int:
    import getpass

    from core import bans
    from core.models import db

    database = _db(settings)
    try:
        address = bans.normalize(args.address)
        with database.atomic():
            lifted = bans.lift(db.connection(), address, f"cli:{getpass.getuser()}", time.time())
            if lifted:
                _audit("ban.lift", address, f"{lifted} ban{'s' if lifted > 1 else ''}")
    except bans.BanError as error:
        raise CliError(str(error)) from None
    if not lifted:
        raise CliError(f"{address} is not banned")
    print(f"Ban of {address} lifted; sipd lets it in again within a second")
    return 0


# -- parser -------------------------------------------------------------------------


_MAX_CALLS_HELP = (
    f"calls it may be in at once, as caller or callee (1-{accounts.MAX_CALLS_LIMIT}, "
    f"default {accounts.DEFAULT_MAX_CALLS})"
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="pbxctl", description="Manage the PBX.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = sub.add_parser("init", help="create or upgrade the database (idempotent)")
    init.add_argument(
        "--first-admin",
        action="store_true",
        help="create user 'admin' with a generated password if no admin exists",
    )
    init.set_defaults(func=cmd_init)

    ext = sub.add_parser("ext", help="manage extensions").add_subparsers(
        dest="ext_command", required=True, metavar="ACTION"
    )
    add = ext.add_parser("add", help="create an extension")
    add.add_argument("number")
    add.add_argument("--name", default="")
    secret = add.add_mutually_exclusive_group()
    secret.add_argument("--password")
    secret.add_argument("--generate", action="store_true")
    add.add_argument("--max-calls", metavar="N", help=_MAX_CALLS_HELP)
    add.set_defaults(func=cmd_ext_add)
    passwd = ext.add_parser("passwd", help="set or generate an extension's password")
    passwd.add_argument("number")
    secret = passwd.add_mutually_exclusive_group()
    secret.add_argument("--password")
    secret.add_argument("--generate", action="store_true")
    passwd.set_defaults(func=cmd_ext_passwd)
    change = ext.add_parser("set", help="change an extension's call limit")
    change.add_argument("number")
    change.add_argument("--max-calls", metavar="N", required=True, help=_MAX_CALLS_HELP)
    change.set_defaults(func=cmd_ext_set)
    digest = ext.add_parser(
        "digest", help="show or set the digest challenges an extension's phones get")
    digest.add_argument("number")
    digest.add_argument(
        "algorithms", nargs="?", metavar="ALGORITHMS",
        help="most preferred first: MD5, SHA-256, SHA-256,MD5; or 'default' for the PBX's "
             "PBX_DIGEST_ALGORITHMS (MD5 unless set)")
    digest.set_defaults(func=cmd_ext_digest)
    ext.add_parser("list", help="extensions and their registrations").set_defaults(
        func=cmd_ext_list
    )
    remove = ext.add_parser("rm", help="delete an extension")
    remove.add_argument("number")
    remove.set_defaults(func=cmd_ext_rm)
    imp = ext.add_parser("import", help="create extensions from a CSV (number,name,password)")
    imp.add_argument("file")
    imp.set_defaults(func=cmd_ext_import)
    pbxcli_routing.add_ext_commands(ext)
    pbxcli_routing.add_group_commands(sub)
    pbxcli_trunks.add_trunk_commands(sub)
    pbxcli_outbound.add_commands(sub)
    pbxcli_outbound.add_ext_commands(ext)
    pbxcli_ivr.add_commands(sub)
    pbxcli_voicemail.add_commands(sub, ext)

    admin = sub.add_parser("admin", help="manage panel users").add_subparsers(
        dest="admin_command", required=True, metavar="ACTION"
    )
    admin_add = admin.add_parser("add", help="create a panel user")
    admin_add.add_argument("user")
    admin_add.add_argument("--password")
    admin_add.add_argument("--role", choices=accounts.ROLES, default="admin")
    admin_add.set_defaults(func=cmd_admin_add)
    admin_pw = admin.add_parser("passwd", help="set or generate a panel user's password")
    admin_pw.add_argument("user")
    admin_pw.add_argument("--password")
    admin_pw.set_defaults(func=cmd_admin_passwd)
    for verb, what in (("disable", "disable a panel user and end their sessions"),
                       ("enable", "let a disabled panel user log in again")):
        toggle = admin.add_parser(verb, help=what)
        toggle.add_argument("user")
        toggle.set_defaults(func=cmd_admin_enable)
    admin.add_parser("list", help="panel users").set_defaults(func=cmd_admin_list)

    sub.add_parser("sipd", help="run the SIP daemon in the foreground").set_defaults(func=cmd_sipd)
    sub.add_parser("panel", help="run the panel in the foreground").set_defaults(func=cmd_panel)
    sub.add_parser(
        "run", help="run sipd and the panel, each started again if it dies (make run)"
    ).set_defaults(func=cmd_run)
    sub.add_parser("status", help="registrations and extensions").set_defaults(func=cmd_status)
    reg = sub.add_parser("reg", help="registrations (registered contacts)").add_subparsers(
        dest="reg_command", required=True, metavar="ACTION"
    )
    reg_rm = reg.add_parser("rm", help="drop an extension's registration (calls stop ringing it)")
    reg_rm.add_argument("number")
    which = reg_rm.add_mutually_exclusive_group(required=True)
    which.add_argument("--contact", metavar="URI", help="the contact to drop (see pbxctl status)")
    which.add_argument("--all", action="store_true", help="every contact of the extension")
    reg_rm.set_defaults(func=cmd_reg_rm)
    calls = sub.add_parser("calls", help="the last calls, or the live ones")
    calls.add_argument("--last", type=int, default=20, metavar="N",
                       help="how many of the last calls (default 20)")
    calls.add_argument("--active", action="store_true", help="the calls in progress instead")
    calls.add_argument("--hangup", type=int, metavar="ID",
                       help="hang up the live call with this ID (see --active)")
    calls.set_defaults(func=cmd_calls)
    ban = sub.add_parser("ban", help="addresses sipd refuses to answer").add_subparsers(
        dest="ban_command", required=True, metavar="ACTION"
    )
    ban_list = ban.add_parser("list", help="bans in force (--all: the history too)")
    ban_list.add_argument("--all", action="store_true", help="lifted and expired bans too")
    ban_list.add_argument("--last", type=int, default=100, help="with --all: how many")
    ban_list.set_defaults(func=cmd_ban_list)
    ban_add = ban.add_parser("add", help="ban an address by hand")
    ban_add.add_argument("address")
    ban_add.add_argument("--time", metavar="SECONDS",
                         help="how long (default PBX_BAN_TIME, at most 30 days)")
    ban_add.add_argument("--reason", metavar="TEXT", help='shown with the ban ("banned by hand")')
    ban_add.set_defaults(func=cmd_ban_add)
    ban_rm = ban.add_parser("rm", help="lift the ban on an address")
    ban_rm.add_argument("address")
    ban_rm.set_defaults(func=cmd_ban_rm)
    logs = sub.add_parser("logs", help="show the daemons' logs")
    logs.add_argument("service", nargs="?", choices=("sipd", "panel"))
    logs.add_argument("-n", "--lines", type=int, default=50)
    logs.add_argument("-f", "--follow", action="store_true")
    logs.set_defaults(func=cmd_logs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        return args.func(args, settings)
    except (ConfigError, CliError, accounts.AccountError) as error:
        print(f"pbxctl: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

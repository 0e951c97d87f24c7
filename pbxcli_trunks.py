"""pbxctl's trunk commands (issue 12, item 6).

    pbxctl trunk add NAME --host HOST[:PORT] [--transport udp|tcp|tls] [--username USER]
                     [--password PASSWORD] [--auth-user USER] [--register]
                     [--match CIDR[,CIDR...]] [--from-user USER] [--from-domain DOMAIN]
                     [--caller-id NUMBER] [--caller-id-header from|pai] [--max-calls N]
                     [--outbound-proxy HOST[:PORT]]
                     [--keepalive SECONDS]
    pbxctl trunk set NAME [the same options; --no-register]
    pbxctl trunk list | trunk show NAME | trunk rm NAME
    pbxctl trunk register NAME   (the running sipd registers that trunk again now)

The password may come from PBX_TRUNK_PASSWORD or `--password -` (one line on
stdin) so it need not be on the command line (where `ps` shows it). It is never
printed: `trunk show` says "set" or "not set". The checks are core's
(core/trunks.py, shared with the panel); a refusal is one line on stderr and
exit status 1 with nothing written.
"""

from __future__ import annotations

import os
import sys

from core import outbound, trunks
from pbxcli_common import CliError, audit_change, noun, open_db, table, verb


def _password(args) -> str | None:
    if args.password == "-":
        line = sys.stdin.readline()
        if not line:
            raise CliError("--password -: nothing on stdin")
        return line.rstrip("\r\n")
    if args.password is not None:
        return args.password
    return os.environ.get("PBX_TRUNK_PASSWORD")


def _values(args) -> dict:
    register = True if args.register else (False if getattr(args, "no_register", False) else None)
    return {
        "transport": args.transport, "username": args.username, "auth_user": args.auth_user,
        "password": _password(args), "register": register, "match": args.match,
        "from_user": args.from_user, "from_domain": args.from_domain,
        "caller_id": args.caller_id, "caller_id_header": args.caller_id_header,
        "max_calls": args.max_calls,
        "outbound_proxy": args.outbound_proxy, "keepalive_interval": args.keepalive,
        "enabled": False if getattr(args, "disable", False) else (
            True if getattr(args, "enable", False) else None),
    }


def _told(settings) -> None:
    why = trunks.notify_sipd(settings)
    if why:
        print(f"({why})")


def cmd_trunk_add(args, settings) -> int:
    values = _values(args)
    with open_db(settings).atomic():
        trunk = trunks.create_trunk(args.name, args.host, **values)
        audit_change("trunk.create", trunk.name, trunks.detail(trunk))
    print(f"Trunk {trunk.name} created: {trunks.detail(trunk)}")
    _told(settings)
    return 0


def cmd_trunk_set(args, settings) -> int:
    values = _values(args)
    values["host"] = args.host
    with open_db(settings).atomic():
        trunk = trunks.update_trunk(args.name, **values)
        audit_change("trunk.edit", trunk.name, trunks.detail(trunk))
    print(f"Trunk {trunk.name} changed: {trunks.detail(trunk)}")
    _told(settings)
    return 0


def cmd_trunk_list(args, settings) -> int:
    open_db(settings)
    rows = [("NAME", "HOST", "TRANSPORT", "REGISTER", "STATUS", "LAST", "REASON")]
    for trunk in trunks.list_trunks():
        state = trunks.state_of(trunk)
        d = trunks.describe(trunk)
        rows.append((
            trunk.name, d["host"], trunk.transport, d["register"],
            state.status if state else "unknown",
            str(state.last_code) if state and state.last_code else "-",
            state.reason if state and state.reason else "-",
        ))
    if len(rows) == 1:
        print("No trunks (pbxctl trunk add NAME --host HOST adds one).")
        return 0
    table(rows)
    return 0


def cmd_trunk_show(args, settings) -> int:
    open_db(settings)
    trunk = trunks.get_trunk(args.name)
    rows = [(key.replace("_", " "), value or "-") for key, value in trunks.describe(trunk).items()]
    state = trunks.state_of(trunk)
    rows.append(("status", state.status if state else "unknown"))
    if state:
        rows.append(("last response", f"{state.last_code or '-'} {state.reason}".strip()))
    table(rows)
    return 0


def cmd_trunk_rm(args, settings) -> int:
    with open_db(settings).atomic():
        trunk = trunks.get_trunk(args.name)
        trunks.delete_trunk(trunk.name)
        audit_change("trunk.delete", trunk.name)
        orphans = outbound.routes_without_trunks()
    print(f"Trunk {trunk.name} deleted.")
    for route in orphans:
        print(f"Outbound route {route} has no trunk left: it takes no call until it gets one.")
    _told(settings)
    return 0


def cmd_trunk_register(args, settings) -> int:
    from core import control

    open_db(settings)
    trunk = trunks.get_trunk(args.name)  # an unknown name: one line, before asking sipd
    if trunk.kind != "register" or not trunk.register or not trunk.enabled:
        raise CliError(f"trunk {trunk.name} does not register"
                       " (pbxctl trunk set NAME --register, and enabled)")
    try:
        control.register_trunk(settings, trunk.name)
    except control.ControlError as error:
        raise CliError(str(error)) from None
    print(f"Trunk {trunk.name}: sipd is registering it again"
          " (pbxctl trunk show NAME for the outcome).")
    return 0


def _options(parser, adding: bool) -> None:
    parser.add_argument("--host", metavar="HOST[:PORT]", required=adding,
                        help="the provider's address or name, with its port if not 5060")
    parser.add_argument("--transport", choices=trunks.TRANSPORTS,
                        default="udp" if adding else None)
    parser.add_argument("--username", metavar="USER")
    parser.add_argument("--password", metavar="PASSWORD",
                        help="'-' reads it from stdin; PBX_TRUNK_PASSWORD also works")
    parser.add_argument("--auth-user", metavar="USER", help="digest user if not the username")
    parser.add_argument("--register", action="store_true", help="register with the provider")
    if not adding:
        parser.add_argument("--no-register", action="store_true", help="stop registering")
        enabled = parser.add_mutually_exclusive_group()
        enabled.add_argument("--disable", action="store_true",
                             help="no registration, no calls out or in until --enable")
        enabled.add_argument("--enable", action="store_true", help="in use again")
    parser.add_argument("--match", metavar="CIDR[,CIDR...]",
                        help="addresses the provider calls from (trusted without a challenge)")
    parser.add_argument("--from-user", metavar="USER")
    parser.add_argument("--from-domain", metavar="DOMAIN")
    parser.add_argument("--caller-id", metavar="NUMBER")
    parser.add_argument("--caller-id-header", metavar="from|pai",
                        help="send the caller ID in From (default) or P-Asserted-Identity")
    parser.add_argument("--max-calls", metavar="N", help="0 = the policy's limit")
    parser.add_argument("--outbound-proxy", metavar="HOST[:PORT]")
    parser.add_argument("--keepalive", metavar="SECONDS", help="OPTIONS every N s (0 = off)")


def add_trunk_commands(sub) -> None:
    trunk = noun(sub, "trunk", "phone providers")
    _options(verb(trunk, "add", cmd_trunk_add, "add a trunk", "name"), adding=True)
    _options(verb(trunk, "set", cmd_trunk_set, "change a trunk (what is given)", "name"),
             adding=False)
    verb(trunk, "list", cmd_trunk_list, "trunks and their state")
    verb(trunk, "show", cmd_trunk_show, "one trunk (never its password)", "name")
    verb(trunk, "rm", cmd_trunk_rm, "delete a trunk", "name")
    verb(trunk, "register", cmd_trunk_register, "register it again now", "name")

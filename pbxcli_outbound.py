"""pbxctl's commands for outside calls (issue 12, item 6) besides the trunks themselves
(pbxcli_trunks.py): inbound and outbound routes, what an extension may dial, and the
toll-fraud policy with its events and blocks.

    pbxctl inbound add DID --to DEST [--trunk NAME] [--record] | inbound list
    pbxctl inbound rm DID [--trunk NAME]        (without --trunk: every route of the DID)
    pbxctl outbound add NAME --trunks NAME[,NAME...] --pattern PATTERN [--pattern PATTERN ...]
                             [--caller-id NUMBER] [--emergency] [--record] [--position N]
    pbxctl outbound set NAME [--name NEW] [--trunks ...] [--pattern ...] [--caller-id N]
                             [--emergency | --no-emergency] [--record | --no-record]
                             [--position N]
    pbxctl outbound list | outbound rm NAME
    pbxctl ext permit NUMBER internal|national|international
    pbxctl ext outbound NUMBER [--caller-id N] [--max-calls N] [--calls-per-hour N]
                               [--minutes-per-hour N]      ('default': the policy's)
    pbxctl ext unblock NUMBER
    pbxctl policy show
    pbxctl policy set [--home-country CC] [--allow CC[,CC...]] [--max-calls N]
                      [--calls-per-hour N] [--minutes-per-hour N] [--trunk-max-calls N]
    pbxctl fraud list [-n N] [--ext NUMBER]

The checks are core's (core/outbound.py, shared with the panel); a refusal is one
line on stderr and exit status 1 with nothing written, and every change is written
with its audit row in one transaction.
"""

from __future__ import annotations

import time

from core import outbound
from pbxcli_common import CliError, audit_change, noun, open_db, table, verb

DEST_HELP = "where calls to the DID go: an extension, a ring group, or 'hangup'"


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "-"


# -- inbound --------------------------------------------------------------------------------


def cmd_inbound_add(args, settings) -> int:
    with open_db(settings).atomic():
        route = outbound.create_inbound(args.did, args.to, args.trunk, record=args.record)
        audit_change("inbound.create", route.did, outbound.describe_inbound(route))
    print(f"Inbound route {outbound.describe_inbound(route)}")
    return 0


def cmd_inbound_list(args, settings) -> int:
    open_db(settings)
    routes = outbound.list_inbound()
    if not routes:
        print("No inbound routes (pbxctl inbound add DID --to DEST adds one).")
        return 0
    rows = [("DID", "TRUNK", "DESTINATION", "RECORDED")]
    rows += [(r.did, r.trunk.name if r.trunk_id else "(any)", r.destination,
              "yes" if r.record else "no") for r in routes]
    table(rows)
    return 0


def cmd_inbound_rm(args, settings) -> int:
    with open_db(settings).atomic():
        routes = outbound.inbound_for(args.did, args.trunk)
        for route in routes:
            words = outbound.describe_inbound(route)
            outbound.delete_inbound(route.id)
            audit_change("inbound.delete", route.did, words)
            print(f"Inbound route {words} deleted.")
    return 0


# -- outbound -------------------------------------------------------------------------------


def _trunk_names(text: str | None) -> list[str] | None:
    return None if text is None else [name.strip() for name in text.split(",")]


def cmd_outbound_add(args, settings) -> int:
    with open_db(settings).atomic():
        route = outbound.create_outbound(
            args.name, _trunk_names(args.trunks), args.pattern, caller_id=args.caller_id or "",
            emergency=args.emergency, position=args.position, record=args.record)
        audit_change("outbound.create", route.name, outbound.describe_outbound(route))
    print(f"Outbound route {route.name} created: {outbound.describe_outbound(route)}")
    return 0


def cmd_outbound_set(args, settings) -> int:
    emergency = True if args.emergency else (False if args.no_emergency else None)
    record = True if args.record else (False if args.no_record else None)
    changes = {"new_name": args.new_name, "trunks": _trunk_names(args.trunks),
               "patterns": args.pattern, "caller_id": args.caller_id, "emergency": emergency,
               "position": args.position, "record": record}
    if all(value is None for value in changes.values()):
        raise CliError("nothing to change: give --name, --trunks, --pattern, --caller-id,"
                       " --emergency, --no-emergency, --record, --no-record or --position")
    with open_db(settings).atomic():
        before = outbound.describe_outbound(outbound.get_outbound(args.name))
        route = outbound.update_outbound(args.name, **changes)
        audit_change("outbound.edit", route.name,
                     f"{before} -> {outbound.describe_outbound(route)}")
    print(f"Outbound route {route.name}: {outbound.describe_outbound(route)}")
    return 0


def cmd_outbound_list(args, settings) -> int:
    open_db(settings)
    routes = outbound.list_outbound()
    if not routes:
        print("No outbound routes (pbxctl outbound add NAME --trunks T --pattern P adds one).")
        return 0
    rows = [("#", "NAME", "PATTERNS", "TRUNKS", "CALLER ID", "EMERGENCY", "RECORDED")]
    rows += [(str(r.position + 1), r.name, " ".join(r.pattern_list()),
              ",".join(r.trunk_names()) or "(none: takes no call)", r.caller_id or "-",
              "yes" if r.emergency else "no", "yes" if r.record else "no") for r in routes]
    table(rows)
    return 0


def cmd_outbound_rm(args, settings) -> int:
    with open_db(settings).atomic():
        route = outbound.delete_outbound(args.name)
        audit_change("outbound.delete", route.name)
    print(f"Outbound route {route.name} deleted.")
    return 0


# -- extensions -----------------------------------------------------------------------------


def cmd_ext_permit(args, settings) -> int:
    with open_db(settings).atomic():
        extension = outbound.set_permission(args.number, args.permission)
        audit_change("extension.permit", extension.number, extension.outbound_permission)
    print(f"Extension {extension.number} may call: {extension.outbound_permission}")
    return 0


def cmd_ext_outbound(args, settings) -> int:
    limits = {"max_calls": args.max_calls, "calls_per_hour": args.calls_per_hour,
              "minutes_per_hour": args.minutes_per_hour}
    with open_db(settings).atomic():
        if args.caller_id is None and all(v is None for v in limits.values()):
            extension = outbound.set_extension_outbound(args.number)
        else:
            extension = outbound.set_extension_outbound(args.number, caller_id=args.caller_id,
                                                        **limits)
            audit_change("extension.outbound", extension.number,
                         outbound.describe_extension(extension))
    print(f"Extension {extension.number}: {outbound.describe_extension(extension)}")
    return 0


def cmd_ext_unblock(args, settings) -> int:
    with open_db(settings).atomic():
        extension, reason = outbound.unblock(args.number)
        audit_change("extension.unblock", extension.number, f"was: {reason}" if reason else "")
    print(f"Extension {extension.number} may call out again"
          + (f" (it was blocked: {reason})" if reason else ""))
    return 0


# -- policy and fraud -----------------------------------------------------------------------


def cmd_policy_show(args, settings) -> int:
    open_db(settings)
    policy = outbound.get_policy()
    home = f"+{policy.home_country}" if policy.home_country else "none"
    allowed = ",".join(f"+{c}" for c in policy.allowed_countries.split(",") if c) or "none"
    rows = [("home country", home + ("" if policy.home_country else
                                     " (no international call is allowed until it is set)")),
            ("allowed countries", allowed)]
    rows += [(outbound.LIMIT_LABELS[key], str(getattr(policy, key))) for key in outbound.LIMITS]
    table(rows)
    return 0


def cmd_policy_set(args, settings) -> int:
    changes = {"home_country": args.home_country, "allowed_countries": args.allow,
               **{key: getattr(args, key) for key in outbound.LIMITS}}
    if all(value is None for value in changes.values()):
        raise CliError("nothing to change: give --home-country, --allow, --max-calls,"
                       " --calls-per-hour, --minutes-per-hour or --trunk-max-calls")
    with open_db(settings).atomic():
        before = outbound.describe_policy(outbound.get_policy())
        policy = outbound.set_policy(**changes)
        audit_change("policy.edit", "outbound",
                     f"{before} -> {outbound.describe_policy(policy)}")
    print(f"Toll-fraud policy: {outbound.describe_policy(policy)}")
    return 0


def cmd_fraud_list(args, settings) -> int:
    open_db(settings)
    if not args.lines.isdigit() or not 1 <= int(args.lines) <= 100000:
        raise CliError(f"-n must be 1 to 100000, got {args.lines!r}")
    events = outbound.fraud_events(limit=int(args.lines), extension=args.ext or "")
    if events:
        rows = [("TIME", "EXTENSION", "NUMBER", "RULE", "TRUNK", "DETAIL")]
        rows += [(_when(e.created_at), e.extension, e.number, e.rule, e.trunk or "-",
                  e.detail or "-") for e in events]
        table(rows)
    else:
        print("No outside call refused by a toll-fraud rule.")
    blocked = outbound.blocked_extensions()
    for extension in blocked:
        print(f"Blocked: {extension.number} since {_when(extension.outbound_blocked_at)}"
              f" ({extension.outbound_blocked_reason or 'hourly limit'});"
              f" pbxctl ext unblock {extension.number} lifts it")
    return 0


# -- parsers --------------------------------------------------------------------------------


def _outbound_options(parser, adding: bool) -> None:
    if not adding:
        parser.add_argument("--name", dest="new_name", metavar="NEW", help="rename it")
    parser.add_argument("--trunks", required=adding, metavar="NAME[,NAME...]",
                        help="the trunks, tried in this order")
    parser.add_argument("--pattern", action="append", required=adding, metavar="PATTERN",
                        help="a FreePBX dial pattern (9|0XXXXXXXX, 998+|XXXXXXXXX);"
                        " repeat for more" + ("" if adding else "; replaces them all"))
    parser.add_argument("--caller-id", metavar="NUMBER",
                        help="sent for callers without their own caller ID")
    parser.add_argument("--emergency", action="store_true",
                        help="always allowed, never counted against a limit")
    if not adding:
        parser.add_argument("--no-emergency", action="store_true")
    parser.add_argument("--record", action="store_true",
                        help="record every call it sends out, whoever makes it")
    if not adding:
        parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--position", metavar="N",
                        help="1 = tried first (default: last; an emergency route first)")


def add_commands(sub) -> None:
    inbound = noun(sub, "inbound", "inbound routes: office numbers (DIDs) to destinations")
    add = verb(inbound, "add", cmd_inbound_add, "route a DID", "did")
    add.add_argument("--to", required=True, metavar="DEST", help=DEST_HELP)
    add.add_argument("--trunk", metavar="NAME", help="only calls from this trunk (default any)")
    add.add_argument("--record", action="store_true",
                     help="record every call to this DID, whoever answers it")
    verb(inbound, "list", cmd_inbound_list, "inbound routes")
    remove = verb(inbound, "rm", cmd_inbound_rm, "delete a DID's routes", "did")
    remove.add_argument("--trunk", metavar="NAME", help="only its route on this trunk")

    routes = noun(sub, "outbound", "outbound routes: dial patterns to trunks")
    _outbound_options(verb(routes, "add", cmd_outbound_add, "add an outbound route", "name"),
                      adding=True)
    _outbound_options(verb(routes, "set", cmd_outbound_set, "change an outbound route", "name"),
                      adding=False)
    verb(routes, "list", cmd_outbound_list, "outbound routes in the order they are tried")
    verb(routes, "rm", cmd_outbound_rm, "delete an outbound route", "name")

    policy = noun(sub, "policy", "toll-fraud policy: countries and limits of outside calls")
    verb(policy, "show", cmd_policy_show, "the policy")
    change = verb(policy, "set", cmd_policy_set, "change the policy (what is given)")
    change.add_argument("--home-country", metavar="CC",
                        help="the office's country code (998); national calls are to it")
    change.add_argument("--allow", metavar="CC[,CC...]",
                        help="other country codes international extensions may call ('' none)")
    for key in outbound.LIMITS:
        low, high = outbound.LIMITS[key]
        change.add_argument("--" + key.replace("_", "-"), dest=key, metavar="N",
                            help=f"{outbound.LIMIT_LABELS[key]} ({low}-{high})")

    fraud = noun(sub, "fraud", "outside calls refused by the toll-fraud rules")
    events = verb(fraud, "list", cmd_fraud_list, "refused calls, newest first, and blocks")
    events.add_argument("-n", "--lines", default="50", metavar="N")
    events.add_argument("--ext", metavar="NUMBER", help="only this extension's")


def add_ext_commands(ext) -> None:
    permit = verb(ext, "permit", cmd_ext_permit, "what an extension may dial outside",
                  "number")
    permit.add_argument("permission", metavar="internal|national|international")
    own = verb(ext, "outbound", cmd_ext_outbound,
               "an extension's caller ID and limits for outside calls", "number")
    own.add_argument("--caller-id", metavar="NUMBER", help="'' for the route's or trunk's")
    for key in outbound.EXTENSION_LIMITS:
        low, high = outbound.LIMITS[key]
        own.add_argument("--" + key.replace("_", "-"), dest=key, metavar="N",
                         help=f"{low}-{high}, or 'default' for the policy's")
    verb(ext, "unblock", cmd_ext_unblock, "lift the block an hourly limit set", "number")

"""pbxctl's commands for call routing (issue 11, item 8): ring groups, forwarding, DND.

    pbxctl group add NUMBER --name NAME --members 1001,1002[,...] [--strategy ringall|hunt]
                            [--ring-time SECONDS] [--member-time SECONDS] [--fallback DEST]
    pbxctl group set NUMBER [--name ...] [--members ...] [--strategy ...] [--ring-time ...]
                            [--member-time ...] [--fallback DEST ('' for none)]
    pbxctl group list | group show NUMBER | group rm NUMBER
    pbxctl ext forward NUMBER (--always DEST | --busy DEST | --no-answer DEST [--after SECONDS]
                              | --unavailable DEST | --off [always|busy|no-answer|unavailable])
    pbxctl ext dnd NUMBER on|off
    pbxctl ext show NUMBER

The checks are core's (core/groups.py, core/forwarding.py, shared with the
panel); a refusal is one line on stderr and exit status 1 with nothing changed,
and every change is written with its audit row in one transaction. A module of
its own because pbxcli.py is long enough; pbxcli.build_parser adds these.
"""

from __future__ import annotations

import time

from core import forwarding, groups, outbound
from core.accounts import get_extension
from pbxcli_common import CliError, audit_change, open_db, table

DEST_HELP = "a number to dial (an extension or a ring group) or 'hangup'"


def _members(text: str) -> list[str]:
    return [m.strip() for m in (text or "").split(",")]


def _describe_group(group) -> str:
    members = ", ".join(group.member_numbers())
    if group.strategy == "hunt":
        how = f"hunt {members}, {group.member_time} s each, {group.ring_time} s in all"
    else:
        how = f"ringall {members} for {group.ring_time} s"
    fallback = f", then {group.fallback}" if group.fallback else ""
    return how + fallback


def _group_detail(group) -> str:
    return (f"name {group.name!r}, {group.strategy}, members {','.join(group.member_numbers())},"
            f" ring time {group.ring_time} s, member time {group.member_time} s,"
            f" fallback {group.fallback or 'none'}")


# -- groups ---------------------------------------------------------------------------------


def cmd_group_add(args, settings) -> int:
    with open_db(settings).atomic():
        group = groups.create_group(
            args.number, args.name, _members(args.members), strategy=args.strategy,
            ring_time=args.ring_time, member_time=args.member_time, fallback=args.fallback,
        )
        audit_change("group.create", group.number, _group_detail(group))
    print(f"Ring group {group.number} ({group.name}) created: {_describe_group(group)}")
    return 0


def cmd_group_set(args, settings) -> int:
    changes = {
        "name": args.name,
        "members": _members(args.members) if args.members is not None else None,
        "strategy": args.strategy,
        "ring_time": args.ring_time,
        "member_time": args.member_time,
        "fallback": args.fallback,
    }
    if all(value is None for value in changes.values()):
        raise CliError("nothing to change: give --name, --members, --strategy, --ring-time,"
                       " --member-time or --fallback")
    with open_db(settings).atomic():
        before = _group_detail(groups.get_group(args.number))
        group = groups.update_group(args.number, **changes)
        audit_change("group.edit", group.number, f"{before} -> {_group_detail(group)}")
    print(f"Ring group {group.number} ({group.name}): {_describe_group(group)}")
    return 0


def cmd_group_list(args, settings) -> int:
    open_db(settings)
    found = groups.list_groups()
    if not found:
        print("No ring groups yet (pbxctl group add NUMBER --name NAME --members ...)")
        return 0
    rows = [("NUMBER", "NAME", "STRATEGY", "RING TIME", "MEMBER TIME", "MEMBERS", "FALLBACK")]
    for group in found:
        rows.append((group.number, group.name, group.strategy, f"{group.ring_time} s",
                     f"{group.member_time} s" if group.strategy == "hunt" else "-",
                     ",".join(group.member_numbers()), group.fallback or "-"))
    table(rows)
    return 0


def cmd_group_show(args, settings) -> int:
    from core.models import Extension

    open_db(settings)
    group = groups.get_group(args.number)
    names = {e.number: e.name for e in Extension.select(Extension.number, Extension.name)
             .where(Extension.number.in_(group.member_numbers()))}
    print(f"Ring group {group.number}: {group.name}")
    if group.strategy == "hunt":
        print(f"Strategy: hunt, {group.member_time} s per member, {group.ring_time} s in all")
    else:
        print(f"Strategy: ringall, {group.ring_time} s")
    print("Members: " + ", ".join(f"{n} ({names[n]})" if names.get(n) else n
                                   for n in group.member_numbers()))
    print(f"Fallback: {group.fallback or 'none (callers get 480 Temporarily Unavailable)'}")
    return 0


def cmd_group_rm(args, settings) -> int:
    with open_db(settings).atomic():
        group = groups.get_group(args.number)
        cleared = groups.delete_group(group.number)
        audit_change("group.delete", group.number, "; ".join(
            [f"name {group.name!r}"] + ([f"cleared {', '.join(cleared)}"] if cleared else [])))
    print(f"Ring group {group.number} ({group.name}) deleted")
    for line in cleared:
        print(f"Cleared: {line}")
    return 0


# -- forwarding and DND ---------------------------------------------------------------------


def cmd_ext_forward(args, settings) -> int:
    chosen = [(kind, getattr(args, kind)) for kind in forwarding.KINDS
              if getattr(args, kind) is not None]
    if args.after is not None and (args.off is not None or chosen[0][0] != "no_answer"):
        raise CliError("--after goes with --no-answer")
    with open_db(settings).atomic():
        if args.off is not None:
            kind = None if args.off == "all" else args.off
            extension = forwarding.clear_forward(args.number, kind)
            what = "all forwards off" if kind is None else f"{kind.replace('_', '-')} off"
        else:
            kind, destination = chosen[0]
            extension = forwarding.set_forward(args.number, kind, destination, after=args.after)
            what = f"{kind.replace('_', '-')} -> {getattr(extension, forwarding.FIELDS[kind])}"
            if kind == "no_answer":
                what += f" after {extension.forward_no_answer_after} s"
        audit_change("extension.forward", extension.number, what)
    print(f"Extension {extension.number}: {what}")
    print(f"Now: {forwarding.describe(extension) or 'no forwards, DND off'}")
    return 0


def cmd_ext_dnd(args, settings) -> int:
    on = args.state == "on"
    with open_db(settings).atomic():
        extension = forwarding.set_dnd(args.number, on)
        audit_change("extension.dnd", extension.number, args.state)
    if not on:
        print(f"Extension {extension.number}: do not disturb off")
    elif extension.forward_busy:
        print(f"Extension {extension.number}: do not disturb on (callers go to"
              f" {extension.forward_busy}, its busy forward)")
    else:
        print(f"Extension {extension.number}: do not disturb on (callers get busy)")
    return 0


def cmd_ext_record(args, settings) -> int:
    from core import recording

    on = args.state == "on"
    with open_db(settings).atomic():
        extension = recording.set_record(args.number, on)
        audit_change("extension.record", extension.number, args.state)
    if on:
        print(f"Extension {extension.number}: its calls are recorded from the next one "
              f"(kept {settings.recording_days or 'unlimited'} days in "
              f"{settings.recording_dir})")
    else:
        print(f"Extension {extension.number}: calls no longer recorded")
    return 0


def cmd_ext_show(args, settings) -> int:
    from core.models import Binding

    open_db(settings)
    extension = get_extension(args.number)
    now = time.time()
    bindings = list(Binding.live(now).where(Binding.extension == extension.id)
                    .order_by(Binding.registered_at))
    state = "disabled" if not extension.enabled else (
        f"registered ({len(bindings)} contact{'s' if len(bindings) != 1 else ''})" if bindings
        else "unregistered")
    print(f"Extension {extension.number}: {extension.name or '(no name)'}")
    print(f"State: {state}")
    print(f"Call limit: {extension.max_calls} calls at once")
    print(f"Do not disturb: {'on' if extension.dnd else 'off'}")
    for kind, label in (("always", "Forward always"), ("busy", "Forward on busy"),
                        ("no_answer", "Forward on no answer"),
                        ("unavailable", "Forward when unavailable")):
        destination = getattr(extension, forwarding.FIELDS[kind])
        if destination and kind == "no_answer":
            destination += f" after {extension.forward_no_answer_after} s"
        print(f"{label}: {destination or '-'}")
    member_of = groups.groups_of(extension)
    print("Ring groups: " + (", ".join(f"{g.number} ({g.name})" for g in member_of) or "-"))
    print(f"Outside calls: {outbound.describe_extension(extension)}")
    for binding in bindings:
        unreachable = ", UNREACHABLE" if binding.unreachable_since is not None else ""
        print(f"  {binding.contact} from {binding.source_host}:{binding.source_port}/"
              f"{binding.transport} ({binding.user_agent or '-'}){unreachable}")
    return 0


# -- parsers --------------------------------------------------------------------------------


def _group_options(parser, adding: bool) -> None:
    parser.add_argument("--name", required=adding, help="shown to callees: '1001 via NAME'")
    parser.add_argument("--members", required=adding, metavar="1001,1002[,...]",
                        help="extensions, in hunt order")
    parser.add_argument("--strategy", choices=groups.STRATEGIES,
                        default="ringall" if adding else None,
                        help="everyone at once, or one after another (default ringall)")
    low, high = groups.RING_TIME
    parser.add_argument("--ring-time", metavar="SECONDS", default=30 if adding else None,
                        help=f"how long the group rings in all ({low}-{high}, default 30)")
    low, high = groups.MEMBER_TIME
    parser.add_argument("--member-time", metavar="SECONDS", default=15 if adding else None,
                        help=f"hunt: how long each member rings ({low}-{high}, default 15)")
    parser.add_argument("--fallback", metavar="DEST", default="" if adding else None,
                        help=f"where the call goes when nobody answers: {DEST_HELP}"
                        + ("" if adding else "; '' for none"))


def add_group_commands(sub) -> None:
    group = sub.add_parser("group", help="ring groups").add_subparsers(
        dest="group_command", required=True, metavar="ACTION"
    )
    add = group.add_parser("add", help="create a ring group")
    add.add_argument("number")
    _group_options(add, adding=True)
    add.set_defaults(func=cmd_group_add)
    change = group.add_parser("set", help="change a ring group (what is given)")
    change.add_argument("number")
    _group_options(change, adding=False)
    change.set_defaults(func=cmd_group_set)
    group.add_parser("list", help="ring groups").set_defaults(func=cmd_group_list)
    show = group.add_parser("show", help="one ring group")
    show.add_argument("number")
    show.set_defaults(func=cmd_group_show)
    remove = group.add_parser("rm", help="delete a ring group")
    remove.add_argument("number")
    remove.set_defaults(func=cmd_group_rm)


def add_ext_commands(ext) -> None:
    forward = ext.add_parser("forward", help="set or clear an extension's call forwarding")
    forward.add_argument("number")
    which = forward.add_mutually_exclusive_group(required=True)
    which.add_argument("--always", metavar="DEST", help=f"every call: {DEST_HELP}")
    which.add_argument("--busy", metavar="DEST", help="when busy or on DND")
    which.add_argument("--no-answer", dest="no_answer", metavar="DEST",
                       help="when it rings unanswered (see --after)")
    which.add_argument("--unavailable", metavar="DEST", help="when no phone is registered")
    which.add_argument("--off", nargs="?", const="all", metavar="KIND",
                       choices=("all", "always", "busy", "no-answer", "unavailable"),
                       help="clear one forward (always, busy, no-answer, unavailable) or all")
    low, high = forwarding.AFTER
    forward.add_argument("--after", metavar="SECONDS",
                         help=f"with --no-answer: seconds of ringing first ({low}-{high},"
                         " default 20)")
    forward.set_defaults(func=cmd_ext_forward)
    dnd = ext.add_parser("dnd", help="do not disturb on or off (callers get busy)")
    dnd.add_argument("number")
    dnd.add_argument("state", choices=("on", "off"))
    dnd.set_defaults(func=cmd_ext_dnd)
    record = ext.add_parser("record", help="record this extension's calls, in and out, on or off")
    record.add_argument("number")
    record.add_argument("state", choices=("on", "off"))
    record.set_defaults(func=cmd_ext_record)
    show = ext.add_parser("show", help="one extension: state, DND, forwards, groups, contacts")
    show.add_argument("number")
    show.set_defaults(func=cmd_ext_show)

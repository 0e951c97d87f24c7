"""pbxctl's routing commands: ring groups, forwarding and DND (issue 11, item 8).

    pbxctl group add NUMBER --name NAME --members 1001,1002[,...] [--strategy ringall|hunt]
                            [--ring-time SECONDS] [--member-time SECONDS] [--fallback DEST]
    pbxctl group set NUMBER [the same options]
    pbxctl group list | group show NUMBER | group rm NUMBER
    pbxctl ext forward NUMBER (--always DEST | --busy DEST | --no-answer DEST [--after SECONDS]
                              | --unavailable DEST | --off [always|busy|no-answer|unavailable])
    pbxctl ext dnd NUMBER on|off

Kept apart from pbxcli.py (the entry point and the other nouns) so each reads
on its own; errors are core.accounts.AccountError, which pbxcli.main prints as
one line on stderr with a non-zero exit, after the transaction rolled back.
"""

from __future__ import annotations

from core import forwarding, groups
from core.accounts import AccountError, get_extension
from core.config import Settings


def _cli():
    import pbxcli  # noqa: PLC0415 - the entry point imports this module

    return pbxcli


def _group_changes(args) -> dict:
    return {key: value for key, value in dict(
        name=args.name, members=args.members, strategy=args.strategy,
        ring_time=args.ring_time, member_time=args.member_time, fallback=args.fallback,
    ).items() if value is not None}


def cmd_group_add(args, settings: Settings) -> int:
    cli = _cli()
    if not groups.parse_members(args.members):
        raise AccountError("a ring group needs at least one member: --members 1001,1002,...")
    with cli._db(settings).atomic():
        changes = _group_changes(args)
        group = groups.create_group(args.number, changes.pop("name", ""),
                                    changes.pop("members", ""), **changes)
        cli._audit("group.create", group.number, describe_group(group))
    print(f"Ring group {group.number} created: {describe_group(group)}")
    return 0


def cmd_group_set(args, settings: Settings) -> int:
    cli = _cli()
    changes = _group_changes(args)
    if not changes:
        raise AccountError("nothing to change: give --name, --members, --strategy, "
                           "--ring-time, --member-time or --fallback")
    with cli._db(settings).atomic():
        before = describe_group(groups.get_group(args.number))
        group = groups.update_group(args.number, **changes)
        cli._audit("group.edit", group.number, f"{before} -> {describe_group(group)}")
    print(f"Ring group {group.number}: {describe_group(group)}")
    return 0


def cmd_group_list(args, settings: Settings) -> int:
    cli = _cli()
    cli._db(settings)
    rows = [("NUMBER", "NAME", "STRATEGY", "RING", "MEMBERS", "FALLBACK")]
    for group in groups.list_groups():
        rows.append((group.number, group.name, _strategy(group), f"{group.ring_time} s",
                     ",".join(group.member_numbers()), group.fallback or "-"))
    cli._table(rows)
    return 0


def cmd_group_show(args, settings: Settings) -> int:
    cli = _cli()
    cli._db(settings)
    group = groups.get_group(args.number)
    print(f"Ring group {group.number}" + (f" ({group.name})" if group.name else ""))
    print(f"Strategy: {_strategy(group)}")
    print(f"Ring time: {group.ring_time} s")
    print(f"Busy members: {'skipped' if group.skip_busy else 'rung too'}")
    print(f"Fallback: {group.fallback or 'none (the caller hears 480)'}")
    print("Members:")
    for position, number in enumerate(group.member_numbers(), 1):
        extension = get_extension(number)
        state = forwarding.describe(extension)
        print(f"  {position}. {number}" + (f" {extension.name}" if extension.name else "")
              + (f" [{state}]" if state else ""))
    return 0


def cmd_group_rm(args, settings: Settings) -> int:
    cli = _cli()
    with cli._db(settings).atomic():
        group = groups.get_group(args.number)
        what = describe_group(group)
        groups.delete_group(group.number)
        cli._audit("group.delete", group.number, what)
    print(f"Ring group {group.number} deleted")
    return 0


def describe_group(group) -> str:
    name = f"{group.name!r}, " if group.name else ""
    return (f"{name}{_strategy(group)}, {group.ring_time} s, members "
            f"{','.join(group.member_numbers())}, fallback {group.fallback or 'none'}")


def _strategy(group) -> str:
    return (f"hunt ({group.member_time} s each)" if group.strategy == "hunt" else "ringall")


def cmd_ext_forward(args, settings: Settings) -> int:
    cli = _cli()
    with cli._db(settings).atomic():
        before = forwarding.describe(get_extension(args.number)) or "none"
        if args.off is not None:
            kind = None if args.off == "all" else args.off
            extension = forwarding.clear_forward(args.number, kind)
        else:
            kind, target = next((k, getattr(args, k)) for k in forwarding.KINDS
                                if getattr(args, k) is not None)
            if args.after is not None and kind != "no_answer":
                raise AccountError("--after goes with --no-answer")
            extension = forwarding.set_forward(args.number, kind, target, args.after)
        after = forwarding.describe(extension) or "none"
        cli._audit("extension.forward", extension.number, f"{before} -> {after}")
    print(f"Extension {extension.number}: forwarding {after}")
    return 0


def cmd_ext_dnd(args, settings: Settings) -> int:
    cli = _cli()
    with cli._db(settings).atomic():
        extension = forwarding.set_dnd(args.number, args.state == "on")
        cli._audit("extension.dnd", extension.number, args.state)
    print(f"Extension {extension.number}: do not disturb {args.state}")
    return 0


def add_group_parser(sub) -> None:
    group = sub.add_parser("group", help="ring groups: a number that rings several extensions")
    verbs = group.add_subparsers(dest="group_command", required=True, metavar="ACTION")
    for verb, func, what in (("add", cmd_group_add, "create a ring group"),
                             ("set", cmd_group_set, "change a ring group")):
        command = verbs.add_parser(verb, help=what)
        command.add_argument("number")
        command.add_argument("--name")
        command.add_argument("--members", metavar="1001,1002,...",
                             help="extensions in order (hunt rings them in this order)",
                             required=verb == "add")
        command.add_argument("--strategy", choices=groups.STRATEGIES,
                             help="ringall: everyone at once (default); hunt: one after another")
        command.add_argument("--ring-time", metavar="SECONDS",
                             help=f"how long the group rings in all ({groups.RING_TIME[0]}-"
                                  f"{groups.RING_TIME[1]}, default 30)")
        command.add_argument("--member-time", metavar="SECONDS",
                             help="hunt: how long each member rings (default 15)")
        command.add_argument("--fallback", metavar="DEST",
                             help="where the call goes when nobody answers: a number or hangup")
        command.set_defaults(func=func)
    verbs.add_parser("list", help="ring groups").set_defaults(func=cmd_group_list)
    for verb, func, what in (("show", cmd_group_show, "a ring group and its members"),
                             ("rm", cmd_group_rm, "delete a ring group")):
        command = verbs.add_parser(verb, help=what)
        command.add_argument("number")
        command.set_defaults(func=func)


def add_ext_parsers(ext) -> None:
    forward = ext.add_parser("forward", help="set or turn off an extension's call forwarding")
    forward.add_argument("number")
    which = forward.add_mutually_exclusive_group(required=True)
    which.add_argument("--always", metavar="DEST", help="every call goes to DEST")
    which.add_argument("--busy", metavar="DEST", help="when busy or on DND")
    which.add_argument("--no-answer", dest="no_answer", metavar="DEST",
                       help="when not answered within --after seconds")
    which.add_argument("--unavailable", metavar="DEST", help="when no phone is registered")
    which.add_argument("--off", nargs="?", const="all",
                       choices=("all", "always", "busy", "no-answer", "unavailable"),
                       help="turn one forward off, or all of them")
    forward.add_argument("--after", metavar="SECONDS",
                         help=f"with --no-answer: seconds of ringing first "
                              f"({forwarding.AFTER[0]}-{forwarding.AFTER[1]}, default 20)")
    forward.set_defaults(func=cmd_ext_forward)
    dnd = ext.add_parser("dnd", help="do not disturb: callers get busy (or the busy forward)")
    dnd.add_argument("number")
    dnd.add_argument("state", choices=("on", "off"))
    dnd.set_defaults(func=cmd_ext_dnd)

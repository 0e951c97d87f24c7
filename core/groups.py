"""Ring groups (issue 11, item 3): the operations pbxctl and the panel share.

A ring group is a number (never an extension's) that rings its members, all at
once (ringall) or one after another (hunt), for at most `ring_time` seconds,
then goes to its fallback destination (core/destinations.py; "" : the caller
gets 480). sipd reads groups when a call comes in (sipd/routing/), so a change
applies to the next call. Each operation checks everything first and writes in
one transaction; errors are `AccountError` with a message fit to show a person.
"""

from __future__ import annotations

import time

from core import destinations
from core.accounts import AccountError, check_display_name
from core.database import atomic
from core.models import Extension, InboundRoute, RingGroup, RingGroupMember
from core.text import N_, Text

STRATEGIES = RingGroup.STRATEGIES
# Seconds. A group that rings for less than 5 s cannot be answered; five minutes
# of ringing is longer than any caller waits. A hunt member gets at least one
# ring cycle or two, and at most two minutes (a phone's own no-answer limit).
RING_TIME = (5, 300)
MEMBER_TIME = (5, 120)
MAX_MEMBERS = 100


def _seconds(value, bounds: tuple[int, int], message: str) -> int:
    text = str(value).strip() if value is not None else ""
    low, high = bounds
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise AccountError(Text(message, low=low, high=high, text=text))
    return int(text)


def check_ring_time(value) -> int:
    return _seconds(value, RING_TIME,
                    N_("ring time must be %(low)s to %(high)s seconds, got %(text)r"))


def check_member_time(value) -> int:
    return _seconds(value, MEMBER_TIME,
                    N_("time per member must be %(low)s to %(high)s seconds, got %(text)r"))


def check_strategy(value) -> str:
    strategy = (value or "").strip().lower()
    if strategy not in STRATEGIES:
        raise AccountError(Text(N_("strategy must be ringall or hunt, got %(text)r"),
                                text=value or ""))
    return strategy


def check_name(value) -> str:
    name = check_display_name(value)
    if not name:
        # Shown to the callee with the caller ("1001 via Sales"): it must say something.
        raise AccountError(Text(N_("a ring group needs a name")))
    return name


def _check_group_number(number: str) -> str:
    number = (number or "").strip()
    if not destinations.NUMBER_RE.match(number):
        raise AccountError(Text(N_("ring group number %(number)r must be 2 to 15 digits"),
                                number=number))
    return number


def _members(members, group: str) -> list[Extension]:
    """The member extensions in order: at least one, each an extension, none twice."""
    numbers = [str(m).strip() for m in (members or []) if str(m).strip()]
    if not numbers:
        raise AccountError(Text(N_("a ring group needs at least one member")))
    if len(numbers) > MAX_MEMBERS:
        raise AccountError(Text(N_("a ring group has at most %(limit)s members"),
                                limit=MAX_MEMBERS))
    seen: set[str] = set()
    found = {e.number: e for e in Extension.select().where(Extension.number.in_(numbers))}
    extensions = []
    for number in numbers:
        if number in seen:
            raise AccountError(Text(N_("%(number)s is a member twice"), number=number))
        seen.add(number)
        if number not in found:
            if number == group:
                raise AccountError(Text(N_("ring group %(number)s cannot be its own member"),
                                        number=number))
            raise AccountError(Text(N_("member %(number)s is not an extension"), number=number))
        extensions.append(found[number])
    return extensions


def _fallback(text, group: str) -> str:
    try:
        destination = destinations.parse(text)
        if destination is not None and destination.value == group:
            raise AccountError(Text(N_("ring group %(number)s cannot fall back to itself"),
                                    number=group))
        return destinations.check(text)
    except destinations.DestinationError as error:
        raise AccountError(error.args[0]) from None


def _write_members(group: RingGroup, extensions: list[Extension]) -> None:
    RingGroupMember.delete().where(RingGroupMember.group == group.id).execute()
    if extensions:
        RingGroupMember.insert_many(
            [{"group": group.id, "extension": e.id, "position": position}
             for position, e in enumerate(extensions)]
        ).execute()


def create_group(
    number: str,
    name: str,
    members: list[str],
    strategy: str = "ringall",
    ring_time=30,
    member_time=15,
    fallback: str = "",
) -> RingGroup:
    number = _check_group_number(number)
    name = check_name(name)
    strategy = check_strategy(strategy)
    ring_time = check_ring_time(ring_time)
    member_time = check_member_time(member_time)
    with atomic():
        if Extension.by_number(number) is not None:
            raise AccountError(Text(N_("%(number)s is an extension; a ring group needs a number"
                                       " of its own"), number=number))
        if RingGroup.by_number(number) is not None:
            raise AccountError(Text(N_("ring group %(number)s already exists"), number=number))
        extensions = _members(members, number)
        fallback = _fallback(fallback, number)
        group = RingGroup.create(number=number, name=name, strategy=strategy,
                                 ring_time=ring_time, member_time=member_time, fallback=fallback)
        _write_members(group, extensions)
    return get_group(number)


def update_group(
    number: str,
    *,
    name: str | None = None,
    members: list[str] | None = None,
    strategy: str | None = None,
    ring_time=None,
    member_time=None,
    fallback: str | None = None,
) -> RingGroup:
    """Change what is given (None: unchanged); `members` replaces the list and its order."""
    fields: dict = {"updated_at": time.time()}
    if name is not None:
        fields["name"] = check_name(name)
    if strategy is not None:
        fields["strategy"] = check_strategy(strategy)
    if ring_time is not None:
        fields["ring_time"] = check_ring_time(ring_time)
    if member_time is not None:
        fields["member_time"] = check_member_time(member_time)
    with atomic():
        group = get_group(number)
        extensions = _members(members, group.number) if members is not None else None
        if fallback is not None:
            fields["fallback"] = _fallback(fallback, group.number)
        RingGroup.update(**fields).where(RingGroup.id == group.id).execute()
        if extensions is not None:
            _write_members(group, extensions)
    return get_group(group.number)


def delete_group(number: str) -> list[str]:
    """Delete a ring group; forwards and fallbacks that led to it are cleared with it
    (a number that is gone, or taken later by someone else, must not receive them).
    Returns what was cleared, in words, for the caller to show and audit."""
    with atomic():
        group = get_group(number)
        cleared = clear_references(group.number)
        group.delete_instance()  # its members go with it (ON DELETE CASCADE)
    return cleared


def get_group(number: str) -> RingGroup:
    group = RingGroup.by_number((number or "").strip())
    if group is None:
        raise AccountError(Text(N_("no ring group %(number)s"), number=(number or "").strip()))
    return group


def list_groups() -> list[RingGroup]:
    return list(RingGroup.select().order_by(RingGroup.number))


def groups_of(extension: Extension) -> list[RingGroup]:
    """The ring groups `extension` is a member of, by number."""
    return list(
        RingGroup.select()
        .join(RingGroupMember)
        .where(RingGroupMember.extension == extension.id)
        .order_by(RingGroup.number)
    )


FORWARD_FIELDS = {
    "always": "forward_always",
    "busy": "forward_busy",
    "no_answer": "forward_no_answer",
    "unavailable": "forward_unavailable",
}
# The kinds in words, as the panel shows them (translated).
FORWARD_LABELS = {
    "always": N_("always"),
    "busy": N_("on busy"),
    "no_answer": N_("on no answer"),
    "unavailable": N_("when unavailable"),
}


def clear_references(number: str) -> list[Text]:
    """Clear every forward and every group fallback that leads to `number`, in the
    caller's transaction; what was cleared, in words."""
    cleared: list[Text] = []
    for kind, field in FORWARD_FIELDS.items():
        column = getattr(Extension, field)
        for (owner,) in (Extension.select(Extension.number).where(column == number)
                         .order_by(Extension.number).tuples()):
            cleared.append(Text(N_("forward %(kind)s of %(owner)s"),
                                kind=Text(FORWARD_LABELS[kind]), owner=owner))
        Extension.update({column: "", Extension.updated_at: time.time()}).where(
            column == number).execute()
    for (owner,) in (RingGroup.select(RingGroup.number).where(RingGroup.fallback == number)
                     .order_by(RingGroup.number).tuples()):
        cleared.append(Text(N_("fallback of ring group %(owner)s"), owner=owner))
    RingGroup.update(fallback="", updated_at=time.time()).where(
        RingGroup.fallback == number).execute()
    # An office number must not ring whoever takes the number later (issue 12).
    for (did,) in (InboundRoute.select(InboundRoute.did).where(InboundRoute.destination == number)
                   .order_by(InboundRoute.did).tuples()):
        cleared.append(Text(N_("inbound route of DID %(did)s"), did=did))
    InboundRoute.delete().where(InboundRoute.destination == number).execute()
    return cleared

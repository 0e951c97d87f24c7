"""Ring groups, shared by pbxctl and the panel (issue 11, item 3).

A ring group is a number that rings its members: all at once (ringall) or one
after another for member_time seconds each (hunt), for ring_time seconds in
all, then goes to its fallback destination. Each operation checks everything
first and writes in one transaction; errors are `AccountError` with a message
fit to show a person (in the admin's language, core/text.py).
"""

from __future__ import annotations

import re
import time

from core import destinations
from core.accounts import NUMBER_RE, AccountError
from core.models import Extension, RingGroup, RingGroupMember, db
from core.text import N_, Text

STRATEGIES = RingGroup.STRATEGIES
# Bounds a receptionist's group never needs to pass, and that keep a caller from
# being held ringing for ever: the B2BUA's own ring timeout is 30 s by default.
RING_TIME = (5, 300)
MEMBER_TIME = (5, 120)
MAX_MEMBERS = 50
NAME_MAX = 100


def check_group_number(number: str) -> str:
    number = (number or "").strip()
    if not NUMBER_RE.match(number):
        raise AccountError(Text(N_("group number %(number)r must be 2 to 15 digits"),
                                number=number))
    return number


def check_name(name: str) -> str:
    name = (name or "").strip()
    if len(name) > NAME_MAX:
        raise AccountError(Text(N_("group name must be at most %(n)s characters"), n=NAME_MAX))
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise AccountError(Text(N_("group name must not contain control characters")))
    return name


def check_strategy(strategy: str) -> str:
    strategy = (strategy or "").strip().lower()
    if strategy not in STRATEGIES:
        raise AccountError(Text(N_("strategy must be ringall or hunt, got %(text)r"),
                                text=strategy))
    return strategy


def check_seconds(value, bounds: tuple[int, int], what: str) -> int:
    text = str(value).strip() if value is not None else ""
    low, high = bounds
    if not re.fullmatch(r"[0-9]{1,4}", text) or not low <= int(text) <= high:
        raise AccountError(Text(N_("%(what)s must be a whole number of seconds from %(low)s "
                                   "to %(high)s, got %(text)r"),
                                what=Text(what), low=low, high=high, text=text))
    return int(text)


def parse_members(members) -> list[str]:
    """Members in order from a list or a comma-separated text ("1001,1002")."""
    if isinstance(members, str):
        members = members.split(",")
    return [m.strip() for m in members if m and m.strip()]


def check_members(members, group_number: str) -> list[Extension]:
    # No members is allowed: a group made first and filled later, or emptied by
    # deleting its extensions, sends its calls to its fallback (sipd/routing/decide.py).
    numbers = parse_members(members)
    if len(numbers) > MAX_MEMBERS:
        raise AccountError(Text(N_("a ring group has at most %(n)s members"), n=MAX_MEMBERS))
    seen = set()
    found = []
    for number in numbers:
        if number in seen:
            raise AccountError(Text(N_("member %(number)s is listed twice"), number=number))
        seen.add(number)
        if number == group_number:
            raise AccountError(Text(N_("a ring group cannot be a member of itself")))
        extension = Extension.by_number(number)
        if extension is None:
            raise AccountError(Text(N_("member %(number)s is not an extension"), number=number))
        found.append(extension)
    return found


def check_fallback(fallback: str, group_number: str) -> str:
    try:
        return destinations.check(fallback, not_to=group_number)
    except destinations.DestinationError as error:
        raise AccountError(Text(N_("fallback: %(error)s"), error=error.args[0])) from None


def create_group(number: str, name: str, members, strategy: str = "ringall",
                 ring_time: int = 30, member_time: int = 15, fallback: str = "",
                 skip_busy: bool = True) -> RingGroup:
    number = check_group_number(number)
    fields = dict(
        name=check_name(name),
        strategy=check_strategy(strategy),
        ring_time=check_seconds(ring_time, RING_TIME, N_("ring time")),
        member_time=check_seconds(member_time, MEMBER_TIME, N_("member time")),
        skip_busy=bool(skip_busy),
    )
    with db.atomic():
        if Extension.by_number(number) is not None:
            raise AccountError(Text(N_("%(number)s is an extension's number"), number=number))
        if RingGroup.by_number(number) is not None:
            raise AccountError(Text(N_("ring group %(number)s already exists"), number=number))
        extensions = check_members(members, number)
        fields["fallback"] = check_fallback(fallback, number)
        group = RingGroup.create(number=number, **fields)
        _set_members(group, extensions)
    return group


def update_group(number: str, *, name: str | None = None, members=None,
                 strategy: str | None = None, ring_time: int | None = None,
                 member_time: int | None = None, fallback: str | None = None,
                 skip_busy: bool | None = None) -> RingGroup:
    with db.atomic():
        group = get_group(number)
        fields: dict = {"updated_at": time.time()}
        if name is not None:
            fields["name"] = check_name(name)
        if strategy is not None:
            fields["strategy"] = check_strategy(strategy)
        if ring_time is not None:
            fields["ring_time"] = check_seconds(ring_time, RING_TIME, N_("ring time"))
        if member_time is not None:
            fields["member_time"] = check_seconds(member_time, MEMBER_TIME, N_("member time"))
        if fallback is not None:
            fields["fallback"] = check_fallback(fallback, group.number)
        if skip_busy is not None:
            fields["skip_busy"] = bool(skip_busy)
        extensions = check_members(members, group.number) if members is not None else None
        RingGroup.update(**fields).where(RingGroup.id == group.id).execute()
        if extensions is not None:
            RingGroupMember.delete().where(RingGroupMember.group == group.id).execute()
            _set_members(group, extensions)
    return get_group(number)


def delete_group(number: str) -> None:
    """Delete a group; forwards and fallbacks that led to it are cleared (they would
    otherwise lead nowhere, or, worse, to an extension given that number later)."""
    with db.atomic():
        group = get_group(number)
        clear_destination(group.number)
        group.delete_instance()  # its members go with it (ON DELETE CASCADE)


def get_group(number: str) -> RingGroup:
    group = RingGroup.by_number((number or "").strip())
    if group is None:
        raise AccountError(Text(N_("no ring group %(number)s"), number=number))
    return group


def list_groups() -> list[RingGroup]:
    return list(RingGroup.select().order_by(RingGroup.number))


def groups_of(number: str) -> list[RingGroup]:
    """The groups extension `number` is a member of."""
    return list(
        RingGroup.select()
        .join(RingGroupMember)
        .join(Extension)
        .where(Extension.number == number)
        .order_by(RingGroup.number)
    )


def clear_destination(number: str) -> None:
    """Forwards and group fallbacks that lead to `number`, cleared (it is going away)."""
    for field in ("forward_always", "forward_busy", "forward_no_answer", "forward_unavailable"):
        column = getattr(Extension, field)
        Extension.update({column: "", Extension.updated_at: time.time()}).where(
            column == number
        ).execute()
    RingGroup.update(fallback="", updated_at=time.time()).where(
        RingGroup.fallback == number
    ).execute()


def _set_members(group: RingGroup, extensions: list[Extension]) -> None:
    RingGroupMember.insert_many(
        [{"group": group.id, "extension": e.id, "position": i} for i, e in enumerate(extensions)]
    ).execute()

"""Numbers as the panel shows them: the names of extensions and ring groups ("600
Sales"), the numbers sipd lists in a call, and what leads to a number (forwards,
group fallbacks) before it is deleted.

One query per kind for all the numbers of a page (never one per row).
"""

from __future__ import annotations

from collections.abc import Iterable

from core.models import Extension, RingGroup


def names_of(numbers: Iterable[str]) -> dict[str, str]:
    """{number: name} for those of `numbers` that are an extension or a ring group with a
    name; a number that is neither (an outside caller, "hangup") is left out."""
    numbers = {number for number in numbers if number}
    if not numbers:
        return {}
    names = {}
    for model in (RingGroup, Extension):
        query = model.select(model.number, model.name).where(
            model.number.in_(list(numbers)) & (model.name != ""))
        names.update({row.number: row.name for row in query})
    return names


def numbers_in(text: str) -> list[str]:
    """The numbers of a comma-separated list as sipd writes them (Call.ringing)."""
    return [number for number in (part.strip() for part in (text or "").split(",")) if number]


def leading_to(number: str) -> tuple[list[Extension], list[RingGroup]]:
    """The extensions with a forward to `number` and the groups that fall back to it:
    what deleting it turns off (core/groups.py clear_references)."""
    forward = ((Extension.forward_always == number) | (Extension.forward_busy == number)
               | (Extension.forward_no_answer == number)
               | (Extension.forward_unavailable == number))
    return (list(Extension.select().where(forward).order_by(Extension.number)),
            list(RingGroup.select().where(RingGroup.fallback == number)
                 .order_by(RingGroup.number)))

"""The panel's names of numbers: extensions and ring groups, for showing "600 Sales".

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

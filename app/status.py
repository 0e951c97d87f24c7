"""What the panel reads about live state: bindings that have not expired, attempts.

Read straight from the shared database on every request: sipd writes these
rows, so the panel shows what the daemon knows, including after a restart.
"""

from __future__ import annotations

from collections import defaultdict

from peewee import fn

from core.models import AuthAttempt, Binding, Extension


def extensions_in_order():
    # Numeric order for strings of digits: 201 before 1001.
    return Extension.select().order_by(fn.LENGTH(Extension.number), Extension.number)


def live_bindings(now: float | None = None):
    """Every unexpired binding with its extension, by number then soonest expiry."""
    return (
        Binding.live(now)
        .select(Binding, Extension)
        .join(Extension)
        .order_by(fn.LENGTH(Extension.number), Extension.number, Binding.expires_at)
    )


def live_bindings_by_extension(
    now: float | None = None, extension_ids: list[int] | None = None
) -> dict[int, list[Binding]]:
    """Live bindings by extension id: of every extension, or of `extension_ids`
    only (a page of the list: never the whole table)."""
    query = live_bindings(now)
    if extension_ids is not None:
        query = query.where(Binding.extension.in_(extension_ids))
    grouped: dict[int, list[Binding]] = defaultdict(list)
    for binding in query:
        grouped[binding.extension_id].append(binding)
    return grouped


def registered_count(now: float | None = None) -> int:
    """Extensions with at least one live binding."""
    return Binding.live(now).select(Binding.extension).distinct().count()


def live_bindings_of(extension: Extension, now: float | None = None):
    return (
        Binding.live(now)
        .where(Binding.extension == extension.id)
        .order_by(Binding.expires_at)
    )


def recent_failures(limit: int = 200):
    """Failed attempts for every number, known or not, newest first."""
    return (
        AuthAttempt.select()
        .where(AuthAttempt.result == "failure")
        .order_by(AuthAttempt.created_at.desc(), AuthAttempt.id.desc())
        .limit(limit)
    )


def known_numbers(numbers) -> set[str]:
    numbers = set(numbers)
    if not numbers:
        return set()
    query = Extension.select(Extension.number).where(Extension.number.in_(list(numbers)))
    return {row.number for row in query}

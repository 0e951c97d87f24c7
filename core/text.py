"""Messages that core writes in English (what pbxctl prints) and the panel shows in
the admin's language: a Text is the English string, and keeps its message and values
for the panel's catalogue (app/filters.py `translated`; tools/catalogues.py extracts N_)."""

from __future__ import annotations


def N_(message: str) -> str:  # noqa: N802 - Babel's marker: extract, translate when shown
    return message


class Text(str):
    """English text that keeps its message and values (values may be Texts themselves)."""

    message: str
    values: dict

    def __new__(cls, message: str, **values):
        text = super().__new__(cls, message % values if values else message)
        text.message, text.values = message, values
        return text

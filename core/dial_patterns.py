"""Dial patterns of outbound routes, in FreePBX's notation: which numbers a route
takes, and the number it sends to the trunk. Pure: text in, a compiled pattern out;
no I/O, no database.

The notation is FreePBX's (Outbound Routes, "Dial Patterns that will use this
Route"; the help text of FreePBX core, views/routing/form.php,
https://raw.githubusercontent.com/FreePBX/core/release/17.0/views/routing/form.php),
written on one line the way FreePBX's legacy single-field form did and its
migration still reads it, `prepend+prefix|match pattern`:

    X        any digit 0-9
    Z        any digit 1-9
    N        any digit 2-9
    [1237-9] any digit in the brackets (here 1, 2, 3, 7, 8, 9)
    .        wildcard, one or more characters (only at the end)
    !        zero or more characters (only at the end); FreePBX passes patterns to
             Asterisk, whose notation has it ("Pattern Matching",
             https://docs.asterisk.org/Configuration/Dialplan/Pattern-Matching)
    0-9 * #  themselves

    prefix   "Prefix to remove on a successful match. The dialed number is compared
             to this and the subsequent columns for a match. Upon a match, this
             prefix is removed from the dialed number before sending it to the
             trunks." Written before `|`; it may hold the one-digit elements above.
    prepend  "Digits to prepend to a successful match." Written before `+`: digits,
             * and # only.

So `9|0XXXXXXXX` takes 9012345678 and sends 012345678; `998+|XXXXXXXXX` takes
901234567 and sends 998901234567; `998+0|XXXXXXXXX` takes 0901234567 and sends
998901234567. X, Z and N may be written in lower case, as Asterisk allows.

Deliberate departures:
- The wildcards match only what a phone can dial (0-9, *, #, and + for a number
  already in international form), where Asterisk's match any character: a
  Request-URI user with letters or spaces is no number to send to a provider.
- FreePBX's `w`/`W` (wait) and its caller-ID suffix (`/1001`) are not accepted;
  they mean nothing on a SIP trunk's Request-URI.

`parse(text)` gives a `Pattern` (cached: one regex per pattern text) or raises
`PatternError` with a message fit for a form error or one line on stderr;
`Pattern.match(dialled)` gives the number to send, or None; `first_match` tries
patterns in order, first match wins, as a route's patterns do.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from core.text import N_, Text

MAX_LENGTH = 64
DIGITS = "0123456789"
# The one-character classes, written as regex sets built here, never from user text.
CLASSES = {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]"}
# What the wildcards match: the characters a dialled number is made of.
DIALLABLE = r"[0-9*#+]"
WILDCARDS = {".": DIALLABLE + "+", "!": DIALLABLE + "*"}
LITERALS = DIGITS + "*#"


class PatternError(ValueError):
    """A malformed dial pattern; str() is the whole message, one line."""


@dataclass(frozen=True)
class Pattern:
    """A parsed dial pattern. `text` is as written (outer spaces removed)."""

    text: str
    prepend: str  # sent before what is left: digits, * and #
    prefix: str  # pattern text matched and removed from the front ("" for none)
    match_pattern: str  # pattern text of the part that is sent
    regex: re.Pattern[str] = field(repr=False, compare=False)

    def match(self, dialled: str) -> str | None:
        """The number to send to the trunk for `dialled`; None if this pattern does not take it."""
        found = self.regex.fullmatch(dialled)
        if found is None:
            return None
        return self.prepend + found.group("sent")

    def __str__(self) -> str:
        return self.text


def first_match(
    patterns: Iterable[Pattern | str], dialled: str
) -> tuple[Pattern, str] | None:
    """The first of `patterns` (parsed if given as text) that takes `dialled`, with the
    number to send; None when none does. Text that does not parse raises PatternError."""
    for pattern in patterns:
        if isinstance(pattern, str):
            pattern = parse(pattern)
        sent = pattern.match(dialled)
        if sent is not None:
            return pattern, sent
    return None


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> Pattern:
    """The Pattern `text` writes; PatternError naming what is wrong otherwise."""
    text = text.strip()
    if not text:
        raise _error(N_("a dial pattern cannot be empty"), text)
    if len(text) > MAX_LENGTH:
        raise PatternError(Text(
            N_("a dial pattern is at most %(limit)d characters; this one has %(length)d"),
            limit=MAX_LENGTH, length=len(text),
        ))
    prepend, prefix, match_pattern = _split(text)
    for at, char in enumerate(prepend):
        if char not in LITERALS:
            raise _error(
                N_("%(pattern)r: what is prepended (before '+') may hold only digits, * and #,"
                   " not %(char)r"), text, char=char, at=at)
    # Where each part starts in `text`, for messages that point at a character.
    prefix_at = len(prepend) + 1 if "+" in text else 0
    prefix_regex = _compile(text, prefix, offset=prefix_at, last_part=False)
    match_regex = _compile(text, match_pattern, offset=len(text) - len(match_pattern),
                           last_part=True)
    regex = re.compile(f"{prefix_regex}(?P<sent>{match_regex})")
    return Pattern(text, prepend, prefix, match_pattern, regex)


def _split(text: str) -> tuple[str, str, str]:
    """(prepend, prefix, match pattern) of `prepend+prefix|match`, either part optional."""
    if text.count("+") > 1:
        raise _error(N_("%(pattern)r: only one '+' (prepend) is allowed"), text)
    if text.count("|") > 1:
        raise _error(N_("%(pattern)r: only one '|' (prefix to strip) is allowed"), text)
    prepend, plus, rest = text.partition("+")
    if not plus:
        prepend, rest = "", text
    elif "|" in prepend:
        raise _error(N_("%(pattern)r: '+' (prepend) must come before '|' (prefix)"), text)
    prefix, bar, match_pattern = rest.partition("|")
    if not bar:
        prefix, match_pattern = "", rest
    if not match_pattern:
        raise _error(N_("%(pattern)r: nothing to match after the prefix or prepend"), text)
    return prepend, prefix, match_pattern


def _compile(text: str, part: str, *, offset: int, last_part: bool) -> str:
    """The regex of one part of the pattern; `offset` is where it starts in `text`,
    for messages that say where the mistake is."""
    out: list[str] = []
    i = 0
    while i < len(part):
        char, at = part[i], offset + i
        upper = char.upper()
        if char in LITERALS:
            out.append(re.escape(char))
        elif upper in CLASSES:
            out.append(CLASSES[upper])
        elif char in WILDCARDS:
            if not last_part or i != len(part) - 1:
                raise _error(
                    N_("%(pattern)r: the wildcard %(char)r may only be the last character"),
                    text, char=char, at=at)
            out.append(WILDCARDS[char])
        elif char == "[":
            end = part.find("]", i + 1)
            if end < 0:
                raise _error(N_("%(pattern)r: the '[' at character %(position)d is not closed"),
                             text, at=at)
            out.append(_digit_set(text, part[i + 1:end], offset=at + 1))
            i = end
        elif char == "]":
            raise _error(N_("%(pattern)r: the ']' at character %(position)d has no '['"),
                         text, at=at)
        elif char.isalpha():
            raise _error(
                N_("%(pattern)r: the letter %(char)r at character %(position)d means nothing"
                   " here; letters are X (0-9), Z (1-9) and N (2-9)"), text, char=char, at=at)
        else:
            raise _error(
                N_("%(pattern)r: %(char)r at character %(position)d is not part of a dial"
                   " pattern"), text, char=char, at=at)
        i += 1
    return "".join(out)


def _digit_set(text: str, inside: str, *, offset: int) -> str:
    """The regex of `[...]`: digits, * and #, and ranges of digits like 1-5."""
    if not inside:
        raise _error(N_("%(pattern)r: the set at character %(position)d is empty"),
                     text, at=offset - 1)
    members: set[str] = set()
    i = 0
    while i < len(inside):
        char, at = inside[i], offset + i
        if char == "[":
            raise _error(N_("%(pattern)r: a '[' inside a set at character %(position)d"),
                         text, at=at)
        if char not in LITERALS:
            raise _error(
                N_("%(pattern)r: a set may hold only digits, * and # and ranges like 1-5,"
                   " not %(char)r (character %(position)d)"), text, char=char, at=at)
        if inside[i + 1:i + 2] == "-":
            high = inside[i + 2:i + 3]
            if char not in DIGITS or not high or high not in DIGITS:
                raise _error(
                    N_("%(pattern)r: a range in a set goes from a digit to a digit, like 1-5"
                       " (character %(position)d)"), text, at=at)
            if high < char:
                raise _error(
                    N_("%(pattern)r: the range %(range)s at character %(position)d goes"
                       " backwards"), text, at=at, range=f"{char}-{high}")
            members.update(DIGITS[DIGITS.index(char):DIGITS.index(high) + 1])
            i += 3
            continue
        members.add(char)
        i += 1
    return "[" + "".join(re.escape(m) for m in sorted(members)) + "]"


def _error(message: str, text: str, *, at: int | None = None, **values) -> PatternError:
    """A PatternError for `text`; `at` (0-based) is shown 1-based, as people count."""
    if at is not None:
        values["position"] = at + 1
    return PatternError(Text(message, pattern=text, **values))

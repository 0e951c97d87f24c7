"""What a guesser tries first: common passwords, repeats, sequences, the account's own names.

An online guesser against SIP digest (or the panel's login) runs down a list
of the most common passwords, then their usual variants (a capital, digits or
a "!" added, letters swapped for look-alike digits), keyboard walks and the
names the account is known by. `guessable(password, names)` says which of
these a password is, in words fit to show a person, or None.

A fixed list plus rules rather than a strength estimator (zxcvbn): the answer
is the same on every machine, each refusal names its reason in one phrase,
the list is a file in the repository that anyone can read, and nothing is
added to the runtime dependencies. zxcvbn's port is 1.6 MB of word lists
(English Wikipedia, US TV, surnames) whose scores refuse sound passphrases
in other languages as readily as weak ones, and its feedback is English
prose we could not translate with the panel.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from core.text import N_, Text

COMMON_PASSWORDS_FILE = Path(__file__).with_name("data") / "common-passwords.txt"
# A list word this short is one a guesser pads, not what makes a password weak
# ("abc" in a long random one is chance); bases from 4 characters count.
MIN_BASE = 4
# What people add around a common word: digits, a year, punctuation.
_DECORATION = re.compile(r"^[\d\W_]*(.*?)[\d\W_]*$", re.DOTALL)
# Look-alike substitutions ("p@ssw0rd"); "1" is tried both as i and as l.
_LEET = [str.maketrans("@4083$5!7|", "aaboessitl"), str.maketrans("@4083$5!71|", "aaboessitll")]
# Rows of a QWERTY keyboard, and the digits row, for keyboard walks.
_SEQUENCES = ("abcdefghijklmnopqrstuvwxyz", "0123456789", "qwertyuiop", "asdfghjkl", "zxcvbnm",
              "1234567890")
MIN_RUN = 3
# A name this short (a realm "vm", a user "jo") occurs by chance in random passwords.
MIN_NAME = 3
MIN_LABEL = 4


@functools.cache

def length_problem(password: str, minimum: int, maximum: int) -> str | None:
    """The checks every password starts with (extensions and panel users): blank,
    too long, too short, too short once blanks are left out (ten spaces, or a
    short word padded with them, is not ten characters of secret). The phrase
    completes "password ..."."""
    if not password.strip():
        return Text(N_("must not be blank"))
    if len(password) > maximum:
        return Text(N_("must be at most %(maximum)s characters (this one has %(length)s)"),
                    maximum=maximum, length=len(password))
    if len(password) < minimum:
        return Text(N_("must be at least %(minimum)s characters"), minimum=minimum)
    if len("".join(password.split())) < minimum:
        return Text(N_("must be at least %(minimum)s characters besides spaces"),
                    minimum=minimum)
    return None

def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in lines if line and not line.startswith("#"))


def guessable(password: str, names: Iterable[tuple[str, str]] = ()) -> str | None:
    """Why a guesser would find `password` early, or None.

    `names`: (name, what it is) pairs the account is known by, such as
    ("1001", "the extension number"); the password must not contain any of
    them, in any case. A number is checked at any length (extension numbers
    have 2 digits and up), other names from MIN_NAME characters. The phrase
    completes "password ...", like core.credentials.password_problem's.
    """
    lower = password.lower()
    for name, what in names:
        name = (name or "").strip().lower()
        if (name.isdigit() or len(name) >= MIN_NAME) and name in lower:
            return Text(N_("must not contain %(what)s (%(name)s)"), what=what, name=name)
    if _mostly_one_character(lower):
        return Text(N_("must not be mostly one repeated character"))
    if _repeated_pattern(lower):
        return Text(N_("must not be a short pattern repeated"))
    if _mostly_sequences(lower):
        return Text(N_("must not be a simple sequence such as abcdef, 123456 or qwerty"))
    if _common(lower):
        return Text(N_("is one of the most common passwords (or one with digits or symbols added)"))
    return None


def _mostly_one_character(lower: str) -> bool:
    (_, count), = Counter(lower).most_common(1)
    return count * 2 >= len(lower)


def _repeated_pattern(lower: str) -> bool:
    """"abcabcabca", "12ab12ab12ab": a unit of up to half the length, repeated."""
    size = len(lower)
    return any((lower[:unit] * size)[:size] == lower for unit in range(1, size // 2 + 1))


def _mostly_sequences(lower: str) -> bool:
    """At least half of it in runs of MIN_RUN or more along the alphabet, digits or keyboard."""
    covered = [False] * len(lower)
    for start in range(len(lower)):
        end = _run_end(lower, start)
        if end - start >= MIN_RUN:
            covered[start:end] = [True] * (end - start)
    return sum(covered) * 2 >= len(lower)


def _run_end(lower: str, start: int) -> int:
    """Where the longest run from `start` along one sequence (either way) ends."""
    best = start + 1
    for sequence in _SEQUENCES:
        for line in (sequence, sequence[::-1]):
            at = line.find(lower[start])
            if at < 0:
                continue
            end = start + 1
            while end < len(lower) and at + (end - start) < len(line) \
                    and lower[end] == line[at + end - start]:
                end += 1
            best = max(best, end)
    return best


def _common(lower: str) -> bool:
    common = common_passwords()
    # Decoration comes off first, so that the digits added ("p@ssw0rd123") are
    # not read as look-alike letters.
    base = _DECORATION.match(lower).group(1)
    for candidate in {lower, base, *(text.translate(t) for text in (lower, base) for t in _LEET)}:
        if candidate in common and (candidate == lower or len(candidate) >= MIN_BASE):
            return True
        inner = _DECORATION.match(candidate).group(1)
        if len(inner) >= MIN_BASE and inner in common:
            return True
    return False


def realm_names(realm: str) -> list[tuple[str, str]]:
    """The realm, and its labels but the last from MIN_LABEL characters.

    "office-pbx.example.com": itself, office-pbx and example. A label of three
    ("pbx") turned up by chance in one generated password in a thousand.
    """
    realm = (realm or "").strip()
    labels = [label for label in realm.split(".")[:-1] if len(label) >= MIN_LABEL]
    return [(realm, Text(N_("the realm"))),
            *((label, Text(N_("the realm's name"))) for label in labels)]

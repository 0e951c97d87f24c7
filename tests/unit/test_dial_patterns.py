"""Dial patterns of outbound routes (core/dial_patterns.py) as tables:
(pattern, dialled) -> the number sent to the trunk, or None for no match."""

from __future__ import annotations

import pytest

from core.dial_patterns import MAX_LENGTH, Pattern, PatternError, first_match, parse

NO = None  # no match: the route does not take the number

ELEMENTS = [
    # X: any digit 0-9
    ("X", "0", "0"),
    ("X", "9", "9"),
    ("X", "", NO),
    ("X", "12", NO),
    ("XXX", "000", "000"),
    # Z: 1-9
    ("Z", "1", "1"),
    ("Z", "9", "9"),
    ("Z", "0", NO),
    # N: 2-9
    ("N", "2", "2"),
    ("N", "9", "9"),
    ("N", "1", NO),
    ("N", "0", NO),
    # lower case, as Asterisk allows
    ("xzn", "012", "012"),
    ("xzn", "002", NO),
    ("xzn", "011", NO),
    # sets: a range, a list, two ranges (FreePBX's help: [1237-9] is 1,2,3,7,8,9)
    ("[1-5]", "1", "1"),
    ("[1-5]", "5", "5"),
    ("[1-5]", "6", NO),
    ("[1-5]", "0", NO),
    ("[1357]", "3", "3"),
    ("[1357]", "4", NO),
    ("[1-35-9]", "2", "2"),
    ("[1-35-9]", "4", NO),
    ("[1-35-9]", "5", "5"),
    ("[1237-9]", "7", "7"),
    ("[1237-9]", "6", NO),
    ("[5]", "5", "5"),
    ("[0-0]", "0", "0"),
    ("[*#]", "#", "#"),
    ("[*#]", "1", NO),
    # "." one or more of what follows, "!" zero or more
    ("00.", "00", NO),
    ("00.", "001", "001"),
    ("00.", "0012345678901234", "0012345678901234"),
    ("00!", "00", "00"),
    ("00!", "001", "001"),
    ("00!", "01", NO),
    (".", "+998901234567", "+998901234567"),
    ("!", "", ""),
    ("*.", "*72#", "*72#"),
    # literals, * and #
    ("*97", "*97", "*97"),
    ("*97", "97", NO),
    ("#1", "#1", "#1"),
    ("123", "123", "123"),
    ("123", "1234", NO),
    ("123", "12", NO),
]

STRIP_AND_PREPEND = [
    # strip: the part before | must be dialled and is not sent
    ("9|.", "95551234", "5551234"),
    ("9|.", "9", NO),
    ("9|.", "85551234", NO),
    ("0|.", "0123", "123"),  # an old FreePBX wiki example: "any number that starts with 0"
    ("9|911", "9911", "911"),  # FreePBX wiki: dialled 9911, the 9 taken off
    ("9|911", "911", NO),
    ("N|XXX", "5123", "123"),  # the prefix may hold one-digit elements
    ("N|XXX", "1123", NO),
    ("|XXX", "123", "123"),  # an empty prefix strips nothing
    # prepend: the part before + is put in front of what is sent
    ("998+XXXXXXXXX", "901234567", "998901234567"),
    ("*31#+XXX", "123", "*31#123"),
    ("+XXX", "123", "123"),  # an empty prepend adds nothing
    ("998+XXXXXXXXX", "90123456", NO),
    # both
    ("998+0|XXXXXXXXX", "0901234567", "998901234567"),
    ("998+0|XXXXXXXXX", "901234567", NO),
    ("1+613|NXXXXXX", "6135551234", "15551234"),  # FreePBX's migration comment: 1+613|NXXXXXX
    ("00+810|.", "810998901234567", "00998901234567"),  # an old access code made 00
    ("00+8|10.", "810998901234567", "0010998901234567"),  # only what is before | goes
]

# The examples, and FreePBX's own documented ones.
DOCUMENTED = [
    ("9|0XXXXXXXX", "9012345678", "012345678"),
    ("9|0XXXXXXXX", "012345678", NO),  # without the 9
    ("9|0XXXXXXXX", "90123456789", NO),  # one digit too many
    ("9|0XXXXXXXX", "9112345678", NO),  # 0 must follow the 9
    ("998+|XXXXXXXXX", "901234567", "998901234567"),
    ("998+|XXXXXXXXX", "9012345678", NO),
    ("9|NXXXXXX", "95551234", "5551234"),  # "Matches 95551234 but passes 5551234"
    ("[2-7]XX", "200", "200"),  # "Matches numbers 200-799"
    ("[2-7]XX", "799", "799"),
    ("[2-7]XX", "199", NO),
    ("[2-7]XX", "800", NO),
    ("NXXNXXXXXX", "2125551234", "2125551234"),
    ("1NXXNXXXXXX", "12125551234", "12125551234"),
    ("1NXXNXXXXXX", "11125551234", NO),
    ("011.", "011", NO),
    ("011.", "01144", "01144"),
]

# Uzbekistan: country code 998, 9-digit national numbers (operator code + 7 digits);
# mobile codes 90 91 93 94 95 97 98 99 33 88; emergency 101 fire, 102 police,
# 103 ambulance, 104 gas.
MOBILE = ("998+|9[013-57-9]XXXXXXX", "998+|33XXXXXXX", "998+|88XXXXXXX")
UZBEK = [
    *[(MOBILE[0], f"{code}1234567", f"998{code}1234567") for code in
      ("90", "91", "93", "94", "95", "97", "98", "99")],
    (MOBILE[0], "921234567", NO),
    (MOBILE[0], "961234567", NO),
    (MOBILE[0], "9012345678", NO),
    (MOBILE[0], "90123456", NO),
    (MOBILE[1], "331234567", "998331234567"),
    (MOBILE[2], "881234567", "998881234567"),
    (MOBILE[2], "871234567", NO),
    ("998[39]XXXXXXXX", "998901234567", "998901234567"),  # dialled in full: sent as is
    ("998[39]XXXXXXXX", "99890123456", NO),
    ("998[39]XXXXXXXX", "+998901234567", NO),  # '+' is the prepend mark, never a literal
    ("71XXXXXXX", "712345678", "712345678"),  # Tashkent landline
    *[("10[1-4]", number, number) for number in ("101", "102", "103", "104")],
    ("10[1-4]", "100", NO),
    ("10[1-4]", "105", NO),
    ("10[1-4]", "1010", NO),
    ("9|10[1-4]", "9103", "103"),
]

# What no pattern matches: the wildcards take only what a phone can dial, and
# classes take only ASCII digits.
NOT_DIALLABLE = [
    (".", "abc", NO),
    (".", "90 123", NO),
    (".", "901\n", NO),
    ("00.", "00x", NO),
    ("X", "٣", NO),  # ARABIC-INDIC DIGIT THREE
    ("X", "x", NO),
    ("*", "a", NO),
]


@pytest.mark.parametrize(
    ("pattern", "dialled", "sent"),
    ELEMENTS + STRIP_AND_PREPEND + DOCUMENTED + UZBEK + NOT_DIALLABLE,
)
def test_pattern_sends(pattern, dialled, sent):
    assert parse(pattern).match(dialled) == sent


def test_the_parts_are_kept():
    pattern = parse(" 998+0|XXXXXXXXX ")
    assert (pattern.text, pattern.prepend, pattern.prefix, pattern.match_pattern) == (
        "998+0|XXXXXXXXX", "998", "0", "XXXXXXXXX")
    assert str(pattern) == "998+0|XXXXXXXXX"


def test_a_pattern_is_compiled_once():
    assert parse("9|0XXXXXXXX") is parse("9|0XXXXXXXX")
    assert parse("9|0XXXXXXXX").regex is parse("9|0XXXXXXXX").regex


ROUTES = ["10[1-4]", "998+|9[013-57-9]XXXXXXX", "9|.", "."]


@pytest.mark.parametrize(
    ("patterns", "dialled", "expected"),
    [
        (ROUTES, "103", ("10[1-4]", "103")),
        (ROUTES, "901234567", ("998+|9[013-57-9]XXXXXXX", "998901234567")),
        # first match wins: 9|. comes before .
        (ROUTES, "95551234", ("9|.", "5551234")),
        (ROUTES, "5551234", (".", "5551234")),
        (ROUTES[:3], "5551234", None),
        ([], "101", None),
        ([parse("X"), "XX"], "12", ("XX", "12")),
    ],
)
def test_first_match(patterns, dialled, expected):
    found = first_match(patterns, dialled)
    if expected is None:
        assert found is None
    else:
        pattern, sent = found
        assert isinstance(pattern, Pattern)
        assert (pattern.text, sent) == expected


def test_first_match_refuses_a_malformed_pattern_text():
    with pytest.raises(PatternError, match="not closed"):
        first_match(["[1-5"], "1")


LONG = "X" * (MAX_LENGTH + 1)
LETTERS = "letters are X (0-9), Z (1-9) and N (2-9)"
PREPEND_ONLY = "what is prepended (before '+') may hold only digits, * and #"

ERRORS = [
    ("", "a dial pattern cannot be empty"),
    ("   ", "a dial pattern cannot be empty"),
    (LONG, "a dial pattern is at most 64 characters; this one has 65"),
    ("9|[1-5", "'9|[1-5': the '[' at character 3 is not closed"),
    ("[1-5", "'[1-5': the '[' at character 1 is not closed"),
    ("X]", "'X]': the ']' at character 2 has no '['"),
    ("1-5]", "'1-5]': '-' at character 2 is not part of a dial pattern"),
    ("[]X", "'[]X': the set at character 1 is empty"),
    ("9|[]", "'9|[]': the set at character 3 is empty"),
    ("[1[2]]", "'[1[2]]': a '[' inside a set at character 3"),
    ("[5-1]", "'[5-1]': the range 5-1 at character 2 goes backwards"),
    ("[1-]", "'[1-]': a range in a set goes from a digit to a digit, like 1-5 (character 2)"),
    ("[*-9]", "'[*-9]': a range in a set goes from a digit to a digit, like 1-5 (character 2)"),
    ("[-5]", "'[-5]': a set may hold only digits, * and # and ranges like 1-5, not '-' (character 2)"),
    ("[X]", "'[X]': a set may hold only digits, * and # and ranges like 1-5, not 'X' (character 2)"),
    ("X.X", "'X.X': the wildcard '.' may only be the last character"),
    ("..", "'..': the wildcard '.' may only be the last character"),
    ("9!X", "'9!X': the wildcard '!' may only be the last character"),
    ("9.|X", "'9.|X': the wildcard '.' may only be the last character"),
    ("9|1|X", "'9|1|X': only one '|' (prefix to strip) is allowed"),
    ("9+8+X", "'9+8+X': only one '+' (prepend) is allowed"),
    ("9|+X", "'9|+X': '+' (prepend) must come before '|' (prefix)"),
    ("9|", "'9|': nothing to match after the prefix or prepend"),
    ("998+", "'998+': nothing to match after the prefix or prepend"),
    ("+|", "'+|': nothing to match after the prefix or prepend"),
    ("9X+|X", f"'9X+|X': {PREPEND_ONLY}, not 'X'"),
    ("9.+X", f"'9.+X': {PREPEND_ONLY}, not '.'"),
    ("ABC", f"'ABC': the letter 'A' at character 1 means nothing here; {LETTERS}"),
    ("9|1W2", f"'9|1W2': the letter 'W' at character 4 means nothing here; {LETTERS}"),
    ("_9X", "'_9X': '_' at character 1 is not part of a dial pattern"),
    ("1XX/1001", "'1XX/1001': '/' at character 4 is not part of a dial pattern"),
    ("9 1", "'9 1': ' ' at character 2 is not part of a dial pattern"),
    ("٣", "'٣': '٣' at character 1 is not part of a dial pattern"),
    # regex syntax is no dial pattern, and never reaches a regex
    ("(9)", "'(9)': '(' at character 1 is not part of a dial pattern"),
    ("9?", "'9?': '?' at character 2 is not part of a dial pattern"),
    ("9\\d", "'9\\\\d': '\\\\' at character 2 is not part of a dial pattern"),
    ("^9$", "'^9$': '^' at character 1 is not part of a dial pattern"),
    ("9\n1", "'9\\n1': '\\n' at character 2 is not part of a dial pattern"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_malformed_patterns_are_refused_with_a_clear_message(text, message):
    with pytest.raises(PatternError) as raised:
        parse(text)
    assert str(raised.value) == message
    assert "\n" not in str(raised.value)  # fit for one line on stderr
    assert isinstance(raised.value, ValueError)


def test_the_longest_pattern_allowed_parses():
    assert parse("X" * MAX_LENGTH).match("1" * MAX_LENGTH) == "1" * MAX_LENGTH

"""The password rules: what a guesser tries first is refused, each with its reason.

core.credentials.password_problem is the one check behind the panel's forms,
`pbxctl ext add/passwd` and `pbxctl ext import`; core.accounts.admin_password_problem
applies the same guesser's rules to panel users.
"""

from __future__ import annotations

import pytest

from core.accounts import admin_password_problem
from core.credentials import MAX_PASSWORD_LENGTH, generate_password, password_problem
from core.weak_passwords import common_passwords

REALM = "office-pbx.example.com"

COMMON = "is one of the most common passwords (or one with digits or symbols added)"
SEQUENCE = "must not be a simple sequence such as abcdef, 123456 or qwerty"
REPEATED = "must not be mostly one repeated character"


@pytest.mark.parametrize(("password", "expected"), [
    # The three the trial got accepted.
    ("password123", COMMON),
    ("aaaaaaaaaa", REPEATED),
    ("abc1001defgh", "must not contain the extension number (1001)"),
    # Blank and length, before anything else.
    (" " * 10, "must not be blank"),
    ("\t \t \t \t \t ", "must not be blank"),
    ("x" * 129, "must be at most 128 characters (this one has 129)"),
    ("Xy3" * 100, "must be at most 128 characters (this one has 300)"),
    ("short-1", "must be at least 10 characters"),
    ("a b c d e f g", "must be at least 10 characters besides spaces"),
    # The rules there before.
    ("1001", "must be at least 10 characters"),
    ("9876501234", "must not be digits only"),
    ('quote"in-it-x', 'must not contain " or \\'),
    # Repeats and patterns.
    ("aaaaabbbbb", REPEATED),
    ("zzzzzzzzzzzzzzzzzzX9", REPEATED),
    ("abcabcabcabc", "must not be a short pattern repeated"),
    ("Xy7-Xy7-Xy7-", "must not be a short pattern repeated"),
    # Sequences: the alphabet, digits, keyboard rows, either way.
    ("abcdefghij", SEQUENCE),
    ("ZYXWVUTSRQ", SEQUENCE),
    ("qwertyuiop", SEQUENCE),
    ("qwerty2024!x", SEQUENCE),
    ("asdfghjkl;'", SEQUENCE),
    ("1234567890ab", SEQUENCE),
    # The common list and its usual variants.
    ("manchester", COMMON),
    ("Sunshine2024", COMMON),
    ("P@ssw0rd123!", COMMON),
    ("!!football!!", COMMON),
    ("Terminator", COMMON),
    # The account's own names.
    ("my-1001-phone-x", "must not contain the extension number (1001)"),
    ("OFFICE-PBX.example.com-7", "must not contain the realm (office-pbx.example.com)"),
    ("Office-PBX-secret-7", "must not contain the realm's name (office-pbx)"),
    ("the-example-secret", "must not contain the realm's name (example)"),
])
def test_a_guessable_password_is_refused_with_its_reason(password, expected):
    assert password_problem("1001", password, REALM) == expected


@pytest.mark.parametrize("password", [
    "correct-horse-1",
    "Xk9mQ2vLp7wz",
    "tram-lemon-quiet-4",
    "my phone is on desk 4",
    # "com", the realm's last label, and three-letter words occur by chance.
    "Rcomb-Tqx-9w-Lk",
    "x" * 9 + "Tq7-Lm3-Zp9-" + "y" * 4,
])
def test_a_sound_password_is_accepted(password):
    assert password_problem("1001", password, REALM) is None


def test_exactly_the_limit_is_accepted():
    password = generate_password(MAX_PASSWORD_LENGTH)
    assert len(password) == MAX_PASSWORD_LENGTH
    assert password_problem("1001", password, REALM) is None


def test_a_two_digit_extension_number_counts_too():
    assert password_problem("42", "tram-lemon-42-quiet", REALM) == \
        "must not contain the extension number (42)"


def test_generated_passwords_pass_the_rules():
    # The generator's alphabet has no 0 or 1, so it cannot spell most numbers;
    # 2,000 of them pass every rule for a realm whose labels are long.
    for _ in range(2000):
        assert password_problem("2345", generate_password(), REALM) is None


def test_the_list_is_the_most_common_thousands():
    common = common_passwords()
    assert len(common) == 10_000
    for password in ("123456", "password", "qwerty", "dragon", "letmein", "password123"):
        assert password in common


@pytest.mark.parametrize(("password", "expected"), [
    ("password123", "is one of the most common passwords (or one with digits or symbols added)"),
    ("aaaaaaaaaaaa", "must not be mostly one repeated character"),
    ("1234567890ab", SEQUENCE),
    ("alice-is-the-boss", "must not contain the user name (alice)"),
    ("x" * 257, "must be at most 256 characters (this one has 257)"),
    (" " * 12, "must not be blank"),
])
def test_admin_passwords_get_the_same_guesser_rules(password, expected):
    assert admin_password_problem(password, "alice") == expected


def test_a_sound_admin_password_is_accepted():
    assert admin_password_problem("tram-lemon-quiet-4", "alice") is None

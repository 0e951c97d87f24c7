"""SIP credentials: HA1 digests, the password policy and generated passwords.

Only HA1 values are stored (RFC 7616 §3.4.2, with the algorithms of
RFC 8760): H(username ":" realm ":" password) for MD5 and SHA-256.
"""

from __future__ import annotations

import hashlib
import secrets
import string

from core.text import N_, Text
from core.weak_passwords import guessable, length_problem, realm_names

ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}

MIN_PASSWORD_LENGTH = 10
# The panel's fields carry no maxlength: a browser would cut a longer paste
# silently (one field cut and not the other read as "the two passwords
# differ"; both cut would set a password other than the one pasted), so the
# limit is said here instead.
MAX_PASSWORD_LENGTH = 128
GENERATED_LENGTH = 20
# No look-alikes (0/O, 1/l/I) so a password read off the screen is typed right.
_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI")


def ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    digest = ALGORITHMS[algorithm]
    return digest(f"{username}:{realm}:{password}".encode()).hexdigest()


def ha1_pair(username: str, realm: str, password: str) -> dict[str, str]:
    """The fields an Extension stores for `password`."""
    return {
        "realm": realm,
        "ha1_md5": ha1(username, realm, password, "MD5"),
        "ha1_sha256": ha1(username, realm, password, "SHA-256"),
    }


def password_problem(number: str, password: str, realm: str = "") -> str | None:
    """Why `password` is too weak for extension `number`, or None if it is fine.

    The phrase completes "password ...". The checks run from the plainest
    (blank, length) to the guesser's list (core/weak_passwords.py), so the
    first reason given is the one to fix first.
    """
    problem = length_problem(password, MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH)
    if problem:
        return problem
    if password == number or password.lower().strip() == number:
        return Text(N_("must not be the extension number"))
    if password.isdigit():
        return Text(N_("must not be digits only"))
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in password):
        return Text(N_("must not contain control characters"))
    if '"' in password or "\\" in password:
        # Some phones cannot enter or store these; a password the phone
        # cannot type is the most common "it just gets 403" we would cause.
        return Text(N_('must not contain " or \\'))
    # A phone's SIP user name is its extension number.
    return guessable(password, [(number, Text(N_("the extension number"))), *realm_names(realm)])


def generate_password(length: int = GENERATED_LENGTH) -> str:
    while True:
        password = "".join(secrets.choice(_ALPHABET) for _ in range(length))
        # Mixed classes so no policy a phone vendor applies can refuse it.
        if (
            any(c.isdigit() for c in password)
            and any(c.islower() for c in password)
            and any(c.isupper() for c in password)
        ):
            return password

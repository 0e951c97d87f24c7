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

# The challenges offered to a phone the PBX knows nothing about: MD5 alone.
# Every common phone answers it, and some fail on anything else: Debian 12's
# baresip 1.0 gives up on a 401 that holds a SHA-256 challenge anywhere in it
# ("Register: Function not implemented"), PJSIP before 2.11 (older MicroSIP)
# and sipp 3.6 read only the first challenge and stop when it is SHA-256. And
# offering MD5 first with SHA-256 after it buys nothing: RFC 8760 §2.4 and
# RFC 7616 §3.7 have a client take the topmost challenge it supports, which
# Linphone and PJSIP 2.11+ do, so they would answer MD5 all the same. SHA-256
# is used where it is offered first, to the extensions whose phones can
# answer it (Extension.digest_algorithms, `pbxctl ext digest`).
DEFAULT_ALGORITHMS = ("MD5",)


def parse_algorithms(value: str) -> tuple[str, ...]:
    """ "SHA-256,MD5" -> ("SHA-256", "MD5"): the challenges to offer, most preferred
    first (RFC 8760 §2.3). ValueError, saying what is expected, for anything else."""
    names = tuple(item.strip().upper() for item in value.split(",") if item.strip())
    if not names or any(name not in ALGORITHMS for name in names):
        raise ValueError(
            f"expected MD5 and/or SHA-256, most preferred first (e.g. SHA-256,MD5), "
            f"got {value!r}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"each algorithm once, got {value!r}")
    return names


def offered_algorithms(own: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """What an extension's phones are challenged with: its own choice (a stored
    Extension.digest_algorithms, "" for none) or the PBX's `default`."""
    if not own:
        return default
    try:
        return parse_algorithms(own)
    except ValueError:  # not written by this code: the PBX's choice is the safe one
        return default

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

"""Operations on extensions and admins shared by pbxctl and the panel.

Each raises `AccountError` with a message fit to show a person (a form error,
one line on stderr); nothing is half-written because each runs in one
transaction.
"""

from __future__ import annotations

import re
import time

from peewee import IntegrityError, fn
from werkzeug.security import check_password_hash, generate_password_hash

from core.credentials import generate_password, ha1_pair, parse_algorithms, password_problem
from core.models import Admin, Binding, Extension, RingGroup, RingGroupMember, db
from core.text import N_, Text
from core.weak_passwords import guessable, length_problem

# An extension number is what a phone dials and puts in its user part:
# 2 to 15 digits keeps it dialable from any keypad.
NUMBER_RE = re.compile(r"^[0-9]{2,15}$")
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
ROLES = ("admin", "viewer")
MIN_ADMIN_PASSWORD = 10
MAX_ADMIN_PASSWORD = 256
# Calls an extension may be in at once (caller or callee, sipd/b2bua/calls.py): the
# default is more than an office phone's lines are ever busy with, and the
# ceiling keeps one extension from being allowed every call the PBX carries.
DEFAULT_MAX_CALLS = 4
MAX_CALLS_LIMIT = 1000


class AccountError(Exception):
    pass


def check_number(number: str) -> str:
    number = (number or "").strip()
    if not NUMBER_RE.match(number):
        raise AccountError(Text(N_("extension number %(number)r must be 2 to 15 digits"),
                                number=number))
    return number


def check_display_name(name: str) -> str:
    name = (name or "").strip()
    if len(name) > 100:
        raise AccountError(Text(N_("display name must be at most 100 characters")))
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise AccountError(Text(N_("display name must not contain control characters")))
    return name


def check_max_calls(value) -> int:
    """An extension's concurrent call limit: a whole number from 1 to MAX_CALLS_LIMIT."""
    text = str(value).strip() if value is not None else ""
    if not re.fullmatch(r"[0-9]{1,9}", text) or not 1 <= int(text) <= MAX_CALLS_LIMIT:
        raise AccountError(
            Text(N_("call limit must be a whole number from 1 to %(limit)s, got %(text)r"),
                 limit=MAX_CALLS_LIMIT, text=text)
        )
    return int(text)


def choose_password(
    number: str, password: str | None, generate: bool, realm: str = ""
) -> tuple[str, bool]:
    """(password, generated?) after the policy check."""
    if generate or not password:
        return generate_password(), True
    problem = password_problem(number, password, realm)
    if problem:
        raise AccountError(Text(N_("password %(problem)s"), problem=problem))
    return password, False


def create_extension(
    number: str,
    realm: str,
    name: str = "",
    password: str | None = None,
    generate: bool = False,
    enabled: bool = True,
    max_calls: int = DEFAULT_MAX_CALLS,
) -> tuple[Extension, str, bool]:
    """Create an extension; returns (extension, password, generated?)."""
    number = check_number(number)
    name = check_display_name(name)
    max_calls = check_max_calls(max_calls)
    password, generated = choose_password(number, password, generate, realm)
    with db.atomic():
        if Extension.by_number(number) is not None:
            raise AccountError(Text(N_("extension %(number)s already exists"), number=number))
        if RingGroup.by_number(number) is not None:
            raise AccountError(Text(N_("%(number)s is a ring group's number"), number=number))
        extension = Extension.create(
            number=number, name=name, enabled=enabled, max_calls=max_calls,
            **ha1_pair(number, realm, password),
        )
        # Every new extension has its mailbox, on, with a PIN shown once (issue 13).
        from core.voicemail import create_mailbox  # noqa: PLC0415 - it imports this module

        _, extension.voicemail_pin, _ = create_mailbox(extension)
    return extension, password, generated


def set_password(
    number: str, realm: str, password: str | None = None, generate: bool = False
) -> tuple[Extension, str, bool]:
    extension = get_extension(number)
    password, generated = choose_password(extension.number, password, generate, realm)
    with db.atomic():
        (
            Extension.update(updated_at=time.time(), **ha1_pair(extension.number, realm, password))
            .where(Extension.id == extension.id)
            .execute()
        )
    return get_extension(number), password, generated


def update_extension(
    number: str, name: str | None = None, enabled: bool | None = None,
    max_calls: int | None = None,
) -> Extension:
    extension = get_extension(number)
    fields = {"updated_at": time.time()}
    if name is not None:
        fields["name"] = check_display_name(name)
    if max_calls is not None:
        fields["max_calls"] = check_max_calls(max_calls)
    if enabled is not None:
        fields["enabled"] = enabled
    with db.atomic():
        Extension.update(**fields).where(Extension.id == extension.id).execute()
        if enabled is False:
            # A disabled extension has no business staying reachable.
            Binding.delete().where(Binding.extension == extension.id).execute()
    return get_extension(number)


def set_digest_algorithms(number: str, value: str) -> Extension:
    """The digest challenges offered to this extension's phones, most preferred first
    ("SHA-256,MD5"), or "default" (or "") for the PBX's PBX_DIGEST_ALGORITHMS.

    Both HA1 values are always stored, so this can change at any time; the
    next REGISTER is challenged with the new choice (sipd/registrar.py).
    """
    extension = get_extension(number)
    value = (value or "").strip()
    own = ""
    if value.lower() not in ("", "default"):
        try:
            own = ",".join(parse_algorithms(value))
        except ValueError as error:
            raise AccountError(f"digest algorithms: {error}") from None
    Extension.update(digest_algorithms=own, updated_at=time.time()).where(
        Extension.id == extension.id
    ).execute()
    return get_extension(number)


def delete_extension(number: str) -> list[str]:
    """Delete an extension. It leaves the ring groups it is in, and forwards and
    fallbacks that led to it are cleared (a number that is gone, or taken later
    by someone else, must not receive them), as a PBX drops a deleted user from
    its hunt lists; refused if it is the only member of a group, which would be
    left ringing nobody. Returns what was changed besides, in words."""
    from core.groups import clear_references  # noqa: PLC0415 - groups imports this module

    extension = get_extension(number)
    with db.atomic():
        alone = (
            RingGroup.select(RingGroup.number, RingGroup.name)
            .join(RingGroupMember)
            .where(RingGroupMember.extension == extension.id)
            .where(RingGroup.id.not_in(
                RingGroupMember.select(RingGroupMember.group)
                .where(RingGroupMember.extension != extension.id)))
            .order_by(RingGroup.number)
            .first()
        )
        if alone is not None:
            raise AccountError(Text(
                N_("extension %(number)s is the only member of ring group %(group)s"
                   " (%(name)s): add another member or delete the group first"),
                number=extension.number, group=alone.number, name=alone.name))
        changed = [Text(N_("left ring group %(group)s (%(name)s)"), group=g.number, name=g.name)
                   for g in (RingGroup.select(RingGroup.number, RingGroup.name)
                             .join(RingGroupMember)
                             .where(RingGroupMember.extension == extension.id)
                             .order_by(RingGroup.number))]
        changed += clear_references(extension.number)
        Binding.delete().where(Binding.extension == extension.id).execute()
        # Its memberships go with it (ON DELETE CASCADE); the order of the others stays.
        extension.delete_instance()
    return changed


def get_extension(number: str) -> Extension:
    extension = Extension.by_number((number or "").strip())
    if extension is None:
        raise AccountError(f"no extension {number}")
    return extension


def admin_password_problem(password: str, username: str = "") -> str | None:
    """Why `password` will not do for panel user `username`, or None.

    Length is counted without blanks: ten spaces, or a short word padded with
    them, is not ten characters of secret. Then what a guesser tries first
    (core/weak_passwords.py), as for extensions.
    """
    problem = length_problem(password, MIN_ADMIN_PASSWORD, MAX_ADMIN_PASSWORD)
    if problem:
        return problem
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in password):
        return Text(N_("must not contain control characters"))
    return guessable(password, [(username, Text(N_("the user name")))])


def _admin_password(password: str | None, username: str = "") -> tuple[str, bool]:
    """(password, generated?): None generates one; anything given is checked, "" included."""
    if password is None:
        return generate_password(), True
    problem = admin_password_problem(password, username)
    if problem:
        raise AccountError(Text(N_("password %(problem)s"), problem=problem))
    return password, False


def create_admin(
    username: str, password: str | None = None, role: str = "admin"
) -> tuple[Admin, str, bool]:
    username = (username or "").strip()
    if not USERNAME_RE.match(username):
        raise AccountError(Text(N_("user name must be 1 to 64 letters, digits or _ . @ -")))
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    password, generated = _admin_password(password, username)
    with db.atomic():
        existing = Admin.by_username(username)
        if existing is not None:
            raise AccountError(_exists(username, existing))
        try:
            admin = Admin.create(
                username=username, password_hash=generate_password_hash(password), role=role
            )
        except IntegrityError:
            # Another writer made it between the look-up and here (the index on lower(username)).
            raise AccountError(f"admin {username} already exists") from None
    return admin, password, generated


def _exists(username: str, existing: Admin) -> str:
    if existing.username == username:
        return f"admin {username} already exists"
    return (f"admin {existing.username} already exists; user names are not case-sensitive,"
            f" so {username} would be the same user")


def get_admin(username: str) -> Admin:
    admin = Admin.by_username(username)
    if admin is None:
        raise AccountError(f"no admin {(username or '').strip()}")
    return admin


def _end_sessions(admin_id: int, **fields) -> None:
    """Write `fields` and end every session of the admin in one statement (see Admin)."""
    (Admin.update(session_epoch=Admin.session_epoch + 1, **fields)
     .where(Admin.id == admin_id)
     .execute())


def end_sessions(admin: Admin) -> None:
    """Log `admin` out everywhere: every session cookie of theirs stops working."""
    _end_sessions(admin.id)


def set_admin_password(username: str, password: str | None = None) -> tuple[Admin, str, bool]:
    """Set (or generate) a panel user's password; every session of theirs ends."""
    admin = get_admin(username)
    password, generated = _admin_password(password, admin.username)
    with db.atomic():
        _end_sessions(admin.id, password_hash=generate_password_hash(password))
    return get_admin(admin.username), password, generated


class LastAdminError(AccountError):
    """The change would leave the panel with no enabled admin to manage it."""


def _other_enabled_admins(admin_id: int):
    return Admin.select(Admin.id).where(
        Admin.role == "admin", Admin.enabled == True, Admin.id != admin_id  # noqa: E712
    )


def _update_keeping_an_admin(admin: Admin, keep_an_admin: bool, ending_sessions: bool,
                             **fields) -> None:
    """Write `fields`; with keep_an_admin, only if another enabled admin remains.

    The check and the write are one UPDATE ... WHERE EXISTS, so two admins
    disabling each other at once cannot both succeed and leave nobody.
    """
    query = Admin.update(
        **fields, **({"session_epoch": Admin.session_epoch + 1} if ending_sessions else {})
    ).where(Admin.id == admin.id)
    guarded = keep_an_admin and admin.role == "admin" and admin.enabled
    if guarded:
        query = query.where(fn.EXISTS(_other_enabled_admins(admin.id)))
    if query.execute() == 0 and guarded:
        raise LastAdminError(
            f"the panel needs an enabled admin and {admin.username} is the last one:"
            " add or enable another admin first"
        )


def set_admin_enabled(username: str, enabled: bool, keep_an_admin: bool = False) -> Admin:
    """Enable or disable a panel user; disabling ends every session of theirs.

    keep_an_admin (the panel): refuse to disable the last enabled admin.
    pbxctl may, being the way back in (`pbxctl admin enable`).
    """
    admin = get_admin(username)
    with db.atomic():
        if enabled:
            Admin.update(enabled=True).where(Admin.id == admin.id).execute()
        else:
            _update_keeping_an_admin(admin, keep_an_admin, ending_sessions=True, enabled=False)
    return get_admin(admin.username)


def set_admin_role(username: str, role: str, keep_an_admin: bool = True) -> Admin:
    """Make a panel user an admin or a viewer; the last enabled admin stays one.

    The role is read from the database on every request, so a session goes on
    under the new role at once; nothing needs ending.
    """
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    admin = get_admin(username)
    with db.atomic():
        if role == "admin":
            Admin.update(role=role).where(Admin.id == admin.id).execute()
        else:
            _update_keeping_an_admin(admin, keep_an_admin, ending_sessions=False, role=role)
    return get_admin(admin.username)


def verify_admin(username: str, password: str) -> Admin | None:
    """The enabled admin with this user name (any case) and password, else None."""
    admin = Admin.by_username(username)
    if admin is None:
        # Same work for an unknown user, so timing does not reveal user names.
        check_password_hash(_DUMMY_HASH, password or "")
        return None
    # A disabled account is checked all the same and answered like a wrong password.
    if not check_password_hash(admin.password_hash, password or "") or not admin.enabled:
        return None
    return admin


_DUMMY_HASH = generate_password_hash("not-a-real-password")

"""Admins: sessions that end server-side, disabled accounts, user names unique in any case.

- admin.session_epoch: every panel session carries the value it had at login;
  logging out, a new password and disabling the account add one, which ends
  every session of that admin at once (app/auth/sessions.py).
- admin.enabled: a disabled admin cannot log in (pbxctl admin disable).
- A unique index on lower(username): "Admin" is the account "admin". Two
  accounts that differ only in case, made before this migration, are not
  refused here (sipd runs migrations too, and must start whatever the panel's
  users look like): the older keeps its name, each newer one is renamed to
  NAME.dupID, which says where it came from and is a valid user name, and the
  rename is written to the audit log and to stderr/the log. Nothing else about
  it changes: its password still works under the new name.

No migrator operations, only SQL both SQLite and PostgreSQL accept (an index
on an expression included), like the other migrations.
"""

import logging
import time

log = logging.getLogger("pbx.migrations")

STATEMENTS = [
    'ALTER TABLE "admin" ADD COLUMN "enabled" INTEGER NOT NULL DEFAULT 1',
    'ALTER TABLE "admin" ADD COLUMN "session_epoch" INTEGER NOT NULL DEFAULT 0',
]
INDEX = 'CREATE UNIQUE INDEX "admin_username_lower" ON "admin" (lower("username"))'
MAX_USERNAME = 64


def up(migrator, db):
    for statement in STATEMENTS:
        db.execute_sql(statement)
    rename_case_duplicates(db)
    db.execute_sql(INDEX)


def rename_case_duplicates(db) -> None:
    p = db.param  # "?" for SQLite, "%s" for PostgreSQL
    rows = db.execute_sql('SELECT "id", "username" FROM "admin" ORDER BY "id"').fetchall()
    taken = {name.lower() for _, name in rows}
    first: dict[str, str] = {}
    for admin_id, name in rows:
        if name.lower() not in first:
            first[name.lower()] = name
            continue
        kept = first[name.lower()]
        new = _free_name(name, admin_id, taken)
        taken.add(new.lower())
        db.execute_sql(f'UPDATE "admin" SET "username" = {p} WHERE "id" = {p}', (new, admin_id))
        db.execute_sql(
            'INSERT INTO "audit_log" ("created_at", "actor", "action", "target", "source",'
            f' "detail") VALUES ({p}, {p}, {p}, {p}, {p}, {p})',
            (time.time(), "migration 0006", "admin.rename", new, "local",
             f"was {name!r}, the same user name as {kept!r} in another case"),
        )
        log.warning("Admin %r renamed to %r: user names are not case-sensitive any more"
                    " and %r exists", name, new, kept)


def _free_name(name: str, admin_id: int, taken: set[str]) -> str:
    suffix = f".dup{admin_id}"
    candidate = name[: MAX_USERNAME - len(suffix)] + suffix
    number = 1
    while candidate.lower() in taken:
        number += 1
        tail = f"{suffix}-{number}"
        candidate = name[: MAX_USERNAME - len(tail)] + tail
    return candidate

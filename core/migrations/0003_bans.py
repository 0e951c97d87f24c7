"""Bans: addresses sipd refuses to answer, with why and until when (security issue).

One row per ban; a repeat offence is a new row with a larger `offences` and a
longer time. A ban is active while `lifted_at` is NULL and `expires_at` is in
the future; lifting (panel, `pbxctl ban rm`) sets `lifted_at`/`lifted_by` and
keeps the row as history.
"""

STATEMENTS = [
    'CREATE TABLE "ban" ("id" INTEGER NOT NULL PRIMARY KEY,'
    ' "address" VARCHAR(64) NOT NULL, "reason" VARCHAR(255) NOT NULL,'
    ' "failures" INTEGER NOT NULL, "offences" INTEGER NOT NULL,'
    ' "created_at" REAL NOT NULL, "expires_at" REAL NOT NULL,'
    ' "lifted_at" REAL, "lifted_by" VARCHAR(64))',
    'CREATE INDEX "ban_address" ON "ban" ("address")',
    'CREATE INDEX "ban_expires_at" ON "ban" ("expires_at")',
]


def up(migrator, db):
    for statement in STATEMENTS:
        db.execute_sql(statement)

"""Audit log of every change (panel and pbxctl) and the panel's login throttle.

Both are written by the panel and pbxctl only; sipd never reads them.
"""

STATEMENTS = [
    'CREATE TABLE "audit_log" ("id" INTEGER NOT NULL PRIMARY KEY, "created_at" REAL NOT NULL,'
    ' "actor" VARCHAR(80) NOT NULL, "action" VARCHAR(32) NOT NULL,'
    ' "target" VARCHAR(255) NOT NULL, "source" VARCHAR(80) NOT NULL,'
    ' "detail" VARCHAR(255) NOT NULL)',
    'CREATE INDEX "audit_log_created_at" ON "audit_log" ("created_at")',
    'CREATE INDEX "audit_log_actor" ON "audit_log" ("actor")',
    'CREATE TABLE "login_throttle" ("key" VARCHAR(160) NOT NULL PRIMARY KEY,'
    ' "failures" INTEGER NOT NULL, "last_failure_at" REAL NOT NULL,'
    ' "locked_until" REAL NOT NULL)',
]


def up(migrator, db):
    for statement in STATEMENTS:
        db.execute_sql(statement)

"""Call history: one row per call, written by sipd's B2BUA, read by the panel."""

STATEMENTS = [
    'CREATE TABLE "call" ("id" INTEGER NOT NULL PRIMARY KEY,'
    ' "call_id" VARCHAR(255) NOT NULL,'
    ' "caller" VARCHAR(64) NOT NULL, "caller_name" VARCHAR(100) NOT NULL,'
    ' "callee" VARCHAR(64) NOT NULL,'
    ' "caller_source" VARCHAR(80) NOT NULL, "callee_contact" TEXT NOT NULL,'
    ' "state" VARCHAR(16) NOT NULL,'
    ' "started_at" REAL NOT NULL, "answered_at" REAL, "ended_at" REAL,'
    ' "disposition" VARCHAR(16), "hangup_by" VARCHAR(16), "sip_status" INTEGER,'
    ' "reason" VARCHAR(255) NOT NULL,'
    ' "caller_media" VARCHAR(80) NOT NULL, "callee_media" VARCHAR(80) NOT NULL,'
    ' "codec" VARCHAR(32) NOT NULL)',
    'CREATE UNIQUE INDEX "call_call_id" ON "call" ("call_id")',
    'CREATE INDEX "call_started_at" ON "call" ("started_at")',
    'CREATE INDEX "call_caller" ON "call" ("caller")',
    'CREATE INDEX "call_callee" ON "call" ("callee")',
    'CREATE INDEX "call_ended_at" ON "call" ("ended_at")',
]


def up(migrator, db):
    for statement in STATEMENTS:
        db.execute_sql(statement)

"""Routing (issue 11): ring groups, forwarding and DND, and what happened to a call.

- extension.dnd and extension.forward_* (always, busy, no answer after N
  seconds, unavailable): destinations as core/destinations.py names them,
  "" for none.
- ring_group / ring_group_member: a number that rings its members, all at once
  (ringall) or in turn (hunt), with a fallback destination.
- call.answered_by (the extension whose phone answered), call.via_group, and
  call.ringing (the extensions ringing now, for the live calls page).
- call_event: forwards, group steps and transfers of a call, in order.
"""

STATEMENTS = [
    'ALTER TABLE "extension" ADD COLUMN "dnd" INTEGER NOT NULL DEFAULT 0',
    'ALTER TABLE "extension" ADD COLUMN "forward_always" VARCHAR(64) NOT NULL DEFAULT \'\'',
    'ALTER TABLE "extension" ADD COLUMN "forward_busy" VARCHAR(64) NOT NULL DEFAULT \'\'',
    'ALTER TABLE "extension" ADD COLUMN "forward_no_answer" VARCHAR(64) NOT NULL DEFAULT \'\'',
    'ALTER TABLE "extension" ADD COLUMN "forward_no_answer_after" INTEGER NOT NULL DEFAULT 20',
    'ALTER TABLE "extension" ADD COLUMN "forward_unavailable" VARCHAR(64) NOT NULL DEFAULT \'\'',
    'CREATE TABLE "ring_group" ("id" INTEGER NOT NULL PRIMARY KEY,'
    ' "number" VARCHAR(32) NOT NULL, "name" VARCHAR(100) NOT NULL,'
    ' "strategy" VARCHAR(16) NOT NULL, "ring_time" INTEGER NOT NULL,'
    ' "member_time" INTEGER NOT NULL, "fallback" VARCHAR(64) NOT NULL,'
    ' "skip_busy" INTEGER NOT NULL DEFAULT 1,'
    ' "created_at" REAL NOT NULL, "updated_at" REAL NOT NULL)',
    'CREATE UNIQUE INDEX "ring_group_number" ON "ring_group" ("number")',
    'CREATE TABLE "ring_group_member" ("id" INTEGER NOT NULL PRIMARY KEY,'
    ' "group_id" INTEGER NOT NULL, "extension_id" INTEGER NOT NULL,'
    ' "position" INTEGER NOT NULL,'
    ' FOREIGN KEY ("group_id") REFERENCES "ring_group" ("id") ON DELETE CASCADE,'
    ' FOREIGN KEY ("extension_id") REFERENCES "extension" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "ring_group_member_group_id" ON "ring_group_member" ("group_id")',
    'CREATE INDEX "ring_group_member_extension_id" ON "ring_group_member" ("extension_id")',
    'CREATE UNIQUE INDEX "ring_group_member_group_id_extension_id"'
    ' ON "ring_group_member" ("group_id", "extension_id")',
    'ALTER TABLE "call" ADD COLUMN "answered_by" VARCHAR(64) NOT NULL DEFAULT \'\'',
    'ALTER TABLE "call" ADD COLUMN "via_group" VARCHAR(32) NOT NULL DEFAULT \'\'',
    'ALTER TABLE "call" ADD COLUMN "ringing" VARCHAR(255) NOT NULL DEFAULT \'\'',
    'CREATE TABLE "call_event" ("id" INTEGER NOT NULL PRIMARY KEY, "call" INTEGER NOT NULL,'
    ' "at" REAL NOT NULL, "kind" VARCHAR(32) NOT NULL, "by" VARCHAR(64) NOT NULL,'
    ' "target" VARCHAR(64) NOT NULL, "detail" VARCHAR(255) NOT NULL)',
    'CREATE INDEX "call_event_call" ON "call_event" ("call")',
]


def up(migrator, db):
    for statement in STATEMENTS:
        db.execute_sql(statement)

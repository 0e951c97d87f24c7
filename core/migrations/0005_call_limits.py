"""Call limits and call identity (issue 14, findings 4 and 10).

- extension.max_calls: the calls an extension may be in at once, as caller or
  callee; 4 for every existing extension, a number an office never meets.
- call.call_id is no longer unique: a Call-ID reused with another From tag is
  another call (RFC 3261 §12), and it must have its own row; the row id is
  what names a call (live calls page, hang-up, control socket).
- call.caller_claimed: the display name the caller's phone sent in From;
  call.caller_name is from now on the name the callee was shown (the
  extension's name in the panel). Rows written before were shown what the
  phone claimed, so for them both columns hold that name.
"""

STATEMENTS = [
    'ALTER TABLE "extension" ADD COLUMN "max_calls" INTEGER NOT NULL DEFAULT 4',
    'DROP INDEX IF EXISTS "call_call_id"',
    'CREATE INDEX "call_call_id" ON "call" ("call_id")',
    'ALTER TABLE "call" ADD COLUMN "caller_claimed" VARCHAR(100) NOT NULL DEFAULT \'\'',
    'UPDATE "call" SET "caller_claimed" = "caller_name"',
]


def up(migrator, db):
    for statement in STATEMENTS:
        db.execute_sql(statement)

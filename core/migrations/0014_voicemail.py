"""Voicemail (issue 13): a mailbox per extension and the messages left in it.

- mailbox: one per extension (unique), made with each new extension and by
  `pbxctl ext voicemail N on` (core/voicemail.py). The PIN is kept only as a
  slow hash. Extensions that exist before this migration get no mailbox: a
  call that rang out with 480 yesterday is not answered by voicemail after an
  upgrade until the admin turns it on.
- voicemail_message: a WAV file under PBX_VOICEMAIL_DIR (path relative to it)
  and its row: caller number and name, when, length, new/old, and the state of
  its e-mail.
"""

STATEMENTS = [
    'CREATE TABLE "mailbox" ("id" INTEGER NOT NULL PRIMARY KEY,'
    ' "extension_id" INTEGER NOT NULL, "enabled" INTEGER NOT NULL,'
    ' "pin_hash" VARCHAR(255) NOT NULL, "greeting" VARCHAR(255) NOT NULL,'
    ' "email" VARCHAR(255) NOT NULL, "language" VARCHAR(8) NOT NULL,'
    ' "created_at" REAL NOT NULL, "updated_at" REAL NOT NULL,'
    ' FOREIGN KEY ("extension_id") REFERENCES "extension" ("id") ON DELETE CASCADE)',
    'CREATE UNIQUE INDEX "mailbox_extension_id" ON "mailbox" ("extension_id")',
    'CREATE TABLE "voicemail_message" ("id" INTEGER NOT NULL PRIMARY KEY,'
    ' "mailbox_id" INTEGER NOT NULL, "caller" VARCHAR(64) NOT NULL,'
    ' "caller_name" VARCHAR(100) NOT NULL, "received" REAL NOT NULL,'
    ' "seconds" REAL NOT NULL, "path" VARCHAR(255) NOT NULL, "folder" VARCHAR(8) NOT NULL,'
    ' "heard_at" REAL, "emailed_at" REAL, "email_error" VARCHAR(255) NOT NULL,'
    ' FOREIGN KEY ("mailbox_id") REFERENCES "mailbox" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "voicemail_message_mailbox_id" ON "voicemail_message" ("mailbox_id")',
    'CREATE INDEX "voicemail_message_received" ON "voicemail_message" ("received")',
]


def up(migrator, db):
    for statement in STATEMENTS:
        db.execute_sql(statement)

"""Voicemail e-mail that outlives a restart (core/voicemail_mail.py, sipd/voicemail_mail.py):
the schedule of a message's e-mail is kept on its row, not only in the sending
greenlet, so a sipd started again sends what was still to be sent.

- voicemail_message.email_tries: the tries made so far (the schedule's place).
- voicemail_message.email_due_at: when the next try is due; NULL = nothing to send
  (sent, given up, or no e-mail).

Rows from before: a mail that had failed but was not given up (emailed_at NULL,
an error that is no "given up: ...") and is less than a day old (the retry
schedule's span) was still being tried by the sipd that the upgrade stopped;
it is due at once, its tries unknown (counted as one).
"""

import time

STATEMENTS = [
    'ALTER TABLE "voicemail_message" ADD COLUMN "email_tries" INTEGER NOT NULL DEFAULT 0',
    'ALTER TABLE "voicemail_message" ADD COLUMN "email_due_at" REAL',
]
PENDING = (
    'UPDATE "voicemail_message" SET "email_tries" = 1, "email_due_at" = ?'
    ' WHERE "emailed_at" IS NULL AND "email_error" != \'\''
    ' AND "email_error" NOT LIKE \'given up:%\' AND "received" > ?'
)


def up(migrator, db):
    for statement in STATEMENTS:
        db.execute_sql(statement)
    now = time.time()
    db.execute_sql(PENDING, (now, now - 86400))

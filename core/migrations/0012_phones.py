"""Phones that work with the defaults (issue 11, item 7).

- extension.digest_algorithms: the digest challenges offered to this
  extension's phones, most preferred first ("SHA-256,MD5"); '' means the PBX's
  PBX_DIGEST_ALGORITHMS (sipd/registrar.py, core/credentials.py).
- auth_attempt.times: how many requests one row stands for. 1, except for
  challenges a phone never answered, which sipd records as one row per phone
  and episode (sipd/unanswered.py) instead of one per request.
"""

STATEMENTS = [
    'ALTER TABLE "extension" ADD COLUMN "digest_algorithms" VARCHAR(32) NOT NULL DEFAULT \'\'',
    'ALTER TABLE "auth_attempt" ADD COLUMN "times" INTEGER NOT NULL DEFAULT 1',
]


def up(migrator, db):
    for statement in STATEMENTS:
        db.execute_sql(statement)

"""The dashboard: registration samples, the daemons' own records, two indexes.

registration_sample: the database keeps no history of registrations (sipd
deletes a binding when it expires, and keeps at most 200 attempts per number,
about three hours of a phone that refreshes every minute), so the chart of
registrations over a day reads samples that sipd takes every five minutes on
its housekeeping timer (core/samples.py).

service: what sipd says of itself (pid, version, start, last seen alive, clean
stop), which the panel cannot learn otherwise without importing sipd.

The indexes keep the dashboard's counts of the last 24 hours cheap on a large
database: failed authentications (a partial index: the successes of every
refresh, most of the table, are not in it, so sipd's insert of one costs
nothing more) and bans by creation time.
"""

STATEMENTS = [
    'CREATE TABLE "registration_sample" ("id" INTEGER NOT NULL PRIMARY KEY,'
    ' "taken_at" REAL NOT NULL, "extensions" INTEGER NOT NULL, "bindings" INTEGER NOT NULL)',
    'CREATE INDEX "registration_sample_taken_at" ON "registration_sample" ("taken_at")',
    'CREATE TABLE "service" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(32) NOT NULL,'
    ' "host" VARCHAR(255) NOT NULL, "pid" INTEGER NOT NULL, "version" VARCHAR(64) NOT NULL,'
    ' "started_at" REAL NOT NULL, "seen_at" REAL NOT NULL, "stopped_at" REAL,'
    ' "detail" VARCHAR(255) NOT NULL)',
    'CREATE UNIQUE INDEX "service_name_host" ON "service" ("name", "host")',
    'CREATE INDEX "auth_attempt_failure_created_at" ON "auth_attempt" ("created_at", "result")'
    " WHERE \"result\" = 'failure'",
    'CREATE INDEX "ban_created_at" ON "ban" ("created_at")',
]


def up(migrator, db):
    for statement in STATEMENTS:
        db.execute_sql(statement)

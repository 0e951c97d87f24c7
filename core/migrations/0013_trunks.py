"""Trunks, inbound and outbound routes, and toll-fraud protection (issue 12).

- trunk: a phone provider. kind "register" (sipd registers to it as a client
  with username/auth_user/password) or "ip" (requests from `match` CIDRs are
  trusted without a challenge). The password is kept because it must be sent
  (DESIGN.md, Secrets): never shown again, logged or exported.
- trunk_state: what sipd last knew of each trunk (registration and keep-alive),
  written by sipd only, read by the panel and `pbxctl trunk list`.
- inbound_route: a DID (the office's number) -> a destination
  (core/destinations.py); trunk_id NULL = the DID on any trunk.
- outbound_route / outbound_route_trunk: ordered routes (position), each with
  FreePBX dial patterns (one per line, core/dial_patterns.py) and an ordered
  list of trunks tried in turn (failover).
- extension.outbound_*: the extension's permission (internal | national |
  international; new extensions: national), its caller ID towards the outside,
  its limits (concurrent outside calls, calls and minutes per hour) and the
  block an hourly limit leaves until an admin lifts it.
- outbound_policy: one row (id 1): the home country (E.164 country code, ""
  until the admin names it: then no international number is allowed at all),
  the other allowed country codes, and the limits' defaults.
- fraud_event: each outside call refused by a rule (the panel's page).
- call.trunk / call.number_sent: the trunk an outside call used and the number
  as sent to it (after the route's rewrite); call.direction.
"""

STATEMENTS = [
    'CREATE TABLE "trunk" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(64) NOT NULL,'
    ' "kind" VARCHAR(16) NOT NULL, "host" VARCHAR(255) NOT NULL, "port" INTEGER,'
    ' "transport" VARCHAR(8) NOT NULL, "username" VARCHAR(128) NOT NULL,'
    ' "auth_user" VARCHAR(128) NOT NULL, "password" VARCHAR(255) NOT NULL,'
    ' "register" INTEGER NOT NULL, "register_expires" INTEGER NOT NULL,'
    ' "match" TEXT NOT NULL, "outbound_proxy" VARCHAR(255) NOT NULL,'
    ' "from_user" VARCHAR(128) NOT NULL, "from_domain" VARCHAR(255) NOT NULL,'
    ' "caller_id" VARCHAR(32) NOT NULL, "caller_id_header" VARCHAR(8) NOT NULL,'
    ' "max_calls" INTEGER NOT NULL, "keepalive_interval" INTEGER NOT NULL,'
    ' "enabled" INTEGER NOT NULL, "created_at" REAL NOT NULL, "updated_at" REAL NOT NULL)',
    'CREATE UNIQUE INDEX "trunk_name" ON "trunk" ("name")',
    'CREATE TABLE "trunk_state" ("trunk_id" INTEGER NOT NULL PRIMARY KEY,'
    ' "status" VARCHAR(16) NOT NULL, "last_code" INTEGER, "reason" VARCHAR(255) NOT NULL,'
    ' "registered_at" REAL, "expires_at" REAL, "next_attempt_at" REAL,'
    ' "failures" INTEGER NOT NULL, "reachable" INTEGER NOT NULL,'
    ' "contact" VARCHAR(255) NOT NULL, "address" VARCHAR(80) NOT NULL,'
    ' "updated_at" REAL NOT NULL,'
    ' FOREIGN KEY ("trunk_id") REFERENCES "trunk" ("id") ON DELETE CASCADE)',
    'CREATE TABLE "inbound_route" ("id" INTEGER NOT NULL PRIMARY KEY,'
    ' "did" VARCHAR(32) NOT NULL, "trunk_id" INTEGER, "destination" VARCHAR(64) NOT NULL,'
    ' "created_at" REAL NOT NULL,'
    ' FOREIGN KEY ("trunk_id") REFERENCES "trunk" ("id") ON DELETE CASCADE)',
    'CREATE UNIQUE INDEX "inbound_route_did_trunk_id" ON "inbound_route" ("did", "trunk_id")',
    'CREATE TABLE "outbound_route" ("id" INTEGER NOT NULL PRIMARY KEY,'
    ' "name" VARCHAR(64) NOT NULL, "position" INTEGER NOT NULL, "patterns" TEXT NOT NULL,'
    ' "caller_id" VARCHAR(32) NOT NULL, "emergency" INTEGER NOT NULL,'
    ' "created_at" REAL NOT NULL, "updated_at" REAL NOT NULL)',
    'CREATE UNIQUE INDEX "outbound_route_name" ON "outbound_route" ("name")',
    'CREATE TABLE "outbound_route_trunk" ("id" INTEGER NOT NULL PRIMARY KEY,'
    ' "route_id" INTEGER NOT NULL, "trunk_id" INTEGER NOT NULL, "position" INTEGER NOT NULL,'
    ' FOREIGN KEY ("route_id") REFERENCES "outbound_route" ("id") ON DELETE CASCADE,'
    ' FOREIGN KEY ("trunk_id") REFERENCES "trunk" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "outbound_route_trunk_route_id" ON "outbound_route_trunk" ("route_id")',
    'CREATE UNIQUE INDEX "outbound_route_trunk_route_id_trunk_id"'
    ' ON "outbound_route_trunk" ("route_id", "trunk_id")',
    'ALTER TABLE "extension" ADD COLUMN "outbound_permission" VARCHAR(16) NOT NULL'
    " DEFAULT 'national'",
    'ALTER TABLE "extension" ADD COLUMN "outbound_caller_id" VARCHAR(32) NOT NULL DEFAULT \'\'',
    'ALTER TABLE "extension" ADD COLUMN "outbound_max_calls" INTEGER',
    'ALTER TABLE "extension" ADD COLUMN "outbound_calls_per_hour" INTEGER',
    'ALTER TABLE "extension" ADD COLUMN "outbound_minutes_per_hour" INTEGER',
    'ALTER TABLE "extension" ADD COLUMN "outbound_blocked_at" REAL',
    'ALTER TABLE "extension" ADD COLUMN "outbound_blocked_reason" VARCHAR(255) NOT NULL'
    " DEFAULT ''",
    'CREATE TABLE "outbound_policy" ("id" INTEGER NOT NULL PRIMARY KEY,'
    ' "home_country" VARCHAR(4) NOT NULL, "allowed_countries" VARCHAR(255) NOT NULL,'
    ' "max_calls" INTEGER NOT NULL, "calls_per_hour" INTEGER NOT NULL,'
    ' "minutes_per_hour" INTEGER NOT NULL, "trunk_max_calls" INTEGER NOT NULL,'
    ' "updated_at" REAL NOT NULL)',
    'INSERT INTO "outbound_policy" VALUES (1, \'\', \'\', 2, 30, 120, 10, 0)',
    'CREATE TABLE "fraud_event" ("id" INTEGER NOT NULL PRIMARY KEY,'
    ' "created_at" REAL NOT NULL, "extension" VARCHAR(64) NOT NULL,'
    ' "number" VARCHAR(64) NOT NULL, "rule" VARCHAR(32) NOT NULL,'
    ' "detail" VARCHAR(255) NOT NULL, "trunk" VARCHAR(64) NOT NULL,'
    ' "source" VARCHAR(80) NOT NULL)',
    'CREATE INDEX "fraud_event_created_at" ON "fraud_event" ("created_at")',
    'ALTER TABLE "call" ADD COLUMN "direction" VARCHAR(16) NOT NULL DEFAULT \'internal\'',
    'ALTER TABLE "call" ADD COLUMN "trunk" VARCHAR(64) NOT NULL DEFAULT \'\'',
    'ALTER TABLE "call" ADD COLUMN "number_sent" VARCHAR(64) NOT NULL DEFAULT \'\'',
    'CREATE INDEX "call_trunk" ON "call" ("trunk")',
]


def up(migrator, db):
    for statement in STATEMENTS:
        db.execute_sql(statement)

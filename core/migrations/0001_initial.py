"""Initial schema: admins, extensions, bindings, authentication attempts.

Frozen DDL rather than `create_tables(models)`, so that later migrations
apply to exactly this shape whatever the models have become since.
"""

STATEMENTS = [
    'CREATE TABLE "admin" ("id" INTEGER NOT NULL PRIMARY KEY, "username" VARCHAR(64) NOT NULL,'
    ' "password_hash" VARCHAR(255) NOT NULL, "role" VARCHAR(16) NOT NULL,'
    ' "created_at" REAL NOT NULL, "last_login_at" REAL)',
    'CREATE UNIQUE INDEX "admin_username" ON "admin" ("username")',
    'CREATE TABLE "extension" ("id" INTEGER NOT NULL PRIMARY KEY, "number" VARCHAR(32) NOT NULL,'
    ' "name" VARCHAR(100) NOT NULL, "enabled" INTEGER NOT NULL, "realm" VARCHAR(255) NOT NULL,'
    ' "ha1_md5" VARCHAR(32) NOT NULL, "ha1_sha256" VARCHAR(64) NOT NULL,'
    ' "created_at" REAL NOT NULL, "updated_at" REAL NOT NULL)',
    'CREATE UNIQUE INDEX "extension_number" ON "extension" ("number")',
    'CREATE TABLE "binding" ("id" INTEGER NOT NULL PRIMARY KEY, "extension_id" INTEGER NOT NULL,'
    ' "aor" VARCHAR(255) NOT NULL, "contact" TEXT NOT NULL, "source_host" VARCHAR(64) NOT NULL,'
    ' "source_port" INTEGER NOT NULL, "transport" VARCHAR(8) NOT NULL, "expires_at" REAL NOT NULL,'
    ' "call_id" VARCHAR(255) NOT NULL, "cseq" INTEGER NOT NULL, "user_agent" VARCHAR(255) NOT NULL,'
    ' "instance" VARCHAR(255) NOT NULL, "q" REAL, "registered_at" REAL NOT NULL,'
    ' "updated_at" REAL NOT NULL,'
    ' FOREIGN KEY ("extension_id") REFERENCES "extension" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "binding_extension_id" ON "binding" ("extension_id")',
    'CREATE INDEX "binding_expires_at" ON "binding" ("expires_at")',
    'CREATE UNIQUE INDEX "binding_extension_id_contact" ON "binding" ("extension_id", "contact")',
    'CREATE TABLE "auth_attempt" ("id" INTEGER NOT NULL PRIMARY KEY, "created_at" REAL NOT NULL,'
    ' "number" VARCHAR(64) NOT NULL, "method" VARCHAR(16) NOT NULL,'
    ' "source_host" VARCHAR(64) NOT NULL, "source_port" INTEGER NOT NULL,'
    ' "transport" VARCHAR(8) NOT NULL, "user_agent" VARCHAR(255) NOT NULL,'
    ' "result" VARCHAR(16) NOT NULL, "reason" VARCHAR(255) NOT NULL)',
    'CREATE INDEX "auth_attempt_created_at" ON "auth_attempt" ("created_at")',
    'CREATE INDEX "auth_attempt_number" ON "auth_attempt" ("number")',
    'CREATE TABLE "setting" ("key" VARCHAR(64) NOT NULL PRIMARY KEY, "value" TEXT NOT NULL)',
]


def up(migrator, db):
    for statement in STATEMENTS:
        db.execute_sql(statement)

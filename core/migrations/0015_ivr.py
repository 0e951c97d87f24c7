"""IVR menus and business hours (issue 13 item 3; core/ivr.py).

- ivr: a menu by name (unique), dialable at `number` when it has one (NULL:
  none; unique among menus and schedules, core/ivr.py keeps it off extensions
  and groups). prompt: the menu's recording, a path relative to
  PBX_SOUNDS_DIR (converted on upload by core/sounds.py). direct_dial: the
  caller may dial an extension number instead of a key. timeout: seconds to
  wait for a key; repeats: how many times the menu is said again after a
  timeout or a wrong key before on_timeout / on_invalid ("" = goodbye, hang up).
- ivr_option: a key (0-9, *, #) of a menu and its destination.
- schedule: business hours by name, dialable like a menu; in_destination while
  open, out_destination otherwise; timezone "" = PBX_TIMEZONE.
- schedule_rule: one opening rule as text ("mon-fri 09:00-18:00", core/hours.py).
- schedule_holiday: a closed day, YYYY-MM-DD.
"""

STATEMENTS = [
    'CREATE TABLE "ivr" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(32) NOT NULL,'
    ' "number" VARCHAR(32), "prompt" VARCHAR(255) NOT NULL, "language" VARCHAR(8) NOT NULL,'
    ' "direct_dial" INTEGER NOT NULL, "timeout" INTEGER NOT NULL, "repeats" INTEGER NOT NULL,'
    ' "on_timeout" VARCHAR(64) NOT NULL, "on_invalid" VARCHAR(64) NOT NULL,'
    ' "created_at" REAL NOT NULL, "updated_at" REAL NOT NULL)',
    'CREATE UNIQUE INDEX "ivr_name" ON "ivr" ("name")',
    'CREATE UNIQUE INDEX "ivr_number" ON "ivr" ("number")',
    'CREATE TABLE "ivr_option" ("id" INTEGER NOT NULL PRIMARY KEY, "ivr_id" INTEGER NOT NULL,'
    ' "digit" VARCHAR(1) NOT NULL, "destination" VARCHAR(64) NOT NULL,'
    ' FOREIGN KEY ("ivr_id") REFERENCES "ivr" ("id") ON DELETE CASCADE)',
    'CREATE UNIQUE INDEX "ivr_option_ivr_id_digit" ON "ivr_option" ("ivr_id", "digit")',
    'CREATE INDEX "ivr_option_destination" ON "ivr_option" ("destination")',
    'CREATE TABLE "schedule" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(32) NOT NULL,'
    ' "number" VARCHAR(32), "in_destination" VARCHAR(64) NOT NULL,'
    ' "out_destination" VARCHAR(64) NOT NULL, "timezone" VARCHAR(64) NOT NULL,'
    ' "created_at" REAL NOT NULL, "updated_at" REAL NOT NULL)',
    'CREATE UNIQUE INDEX "schedule_name" ON "schedule" ("name")',
    'CREATE UNIQUE INDEX "schedule_number" ON "schedule" ("number")',
    'CREATE TABLE "schedule_rule" ("id" INTEGER NOT NULL PRIMARY KEY,'
    ' "schedule_id" INTEGER NOT NULL, "position" INTEGER NOT NULL, "rule" VARCHAR(64) NOT NULL,'
    ' FOREIGN KEY ("schedule_id") REFERENCES "schedule" ("id") ON DELETE CASCADE)',
    'CREATE INDEX "schedule_rule_schedule_id" ON "schedule_rule" ("schedule_id")',
    'CREATE TABLE "schedule_holiday" ("id" INTEGER NOT NULL PRIMARY KEY,'
    ' "schedule_id" INTEGER NOT NULL, "day" VARCHAR(10) NOT NULL,'
    ' FOREIGN KEY ("schedule_id") REFERENCES "schedule" ("id") ON DELETE CASCADE)',
    'CREATE UNIQUE INDEX "schedule_holiday_schedule_id_day" ON "schedule_holiday"'
    ' ("schedule_id", "day")',
]


def up(migrator, db):
    for statement in STATEMENTS:
        db.execute_sql(statement)

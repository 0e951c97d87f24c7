"""admin.language: the panel's language an admin chose ('' until then: the browser decides)."""

STATEMENTS = [
    'ALTER TABLE "admin" ADD COLUMN "language" VARCHAR(8) NOT NULL DEFAULT \'\'',
]


def up(migrator, db):
    for statement in STATEMENTS:
        db.execute_sql(statement)

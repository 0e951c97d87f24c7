"""Qualify (issue 15, item 3): whether a binding answers sipd's OPTIONS probes.

binding.unreachable_since: NULL while the binding answers (or before its first
probe), else when it first failed to. sipd's qualifier (sipd/qualifier.py)
writes it only when it changes, a REGISTER refresh clears it (the phone just
spoke to us), calls do not ring a binding that has it set, and the panel and
`pbxctl status` show it.
"""

STATEMENTS = [
    'ALTER TABLE "binding" ADD COLUMN "unreachable_since" REAL',
]


def up(migrator, db):
    for statement in STATEMENTS:
        db.execute_sql(statement)

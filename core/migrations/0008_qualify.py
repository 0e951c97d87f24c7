"""Qualify (issue 15, item 3): whether a binding answers sipd's OPTIONS probes.

binding.unreachable_since: NULL while the binding answers (or before its first
probe), else when it first failed to. sipd's qualifier (sipd/qualifier.py)
writes it only when it changes, a REGISTER refresh clears it (the phone just
spoke to us), calls do not ring a binding that has it set, and the panel and
`pbxctl status` show it.

binding.superseded_at: set when the same phone seems to have registered again
from a new port (same source address and User-Agent, a new Call-ID: see
sipd/sip/registration.py); the qualifier probes such a binding at once and
drops it at its first silence, clears the mark if it answers.
"""

STATEMENTS = [
    'ALTER TABLE "binding" ADD COLUMN "unreachable_since" REAL',
    'ALTER TABLE "binding" ADD COLUMN "superseded_at" REAL',
]


def up(migrator, db):
    for statement in STATEMENTS:
        db.execute_sql(statement)

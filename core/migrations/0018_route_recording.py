"""Call recording per route (issue 13 item 5: "per extension ... or per route"):
every call that an outbound route sends out, or that an inbound route brings in,
is recorded like the calls of an extension with record_calls (sipd/recording.py),
whoever answers it. Off for every route until an admin turns it on
(`pbxctl outbound add|set NAME --record`, `pbxctl inbound add DID --record`).
"""

STATEMENTS = [
    'ALTER TABLE "outbound_route" ADD COLUMN "record" INTEGER NOT NULL DEFAULT 0',
    'ALTER TABLE "inbound_route" ADD COLUMN "record" INTEGER NOT NULL DEFAULT 0',
]


def up(migrator, db):
    for statement in STATEMENTS:
        db.execute_sql(statement)

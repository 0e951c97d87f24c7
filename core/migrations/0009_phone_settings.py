"""service: what phones need of sipd, as fields rather than the free text of `detail`.

The address sipd advertises and how it was found (PBX_PUBLIC_ADDRESS, its
listening address, or the default route's interface), its real UDP/TCP and TLS
ports and its realm; the panel and pbxctl show these (core/phone_settings.py)
instead of their own settings, which may differ from the running sipd's.
"""

STATEMENTS = [
    'ALTER TABLE "service" ADD COLUMN "sip_address" VARCHAR(255) NOT NULL DEFAULT \'\'',
    'ALTER TABLE "service" ADD COLUMN "address_source" VARCHAR(128) NOT NULL DEFAULT \'\'',
    'ALTER TABLE "service" ADD COLUMN "sip_port" INTEGER',
    'ALTER TABLE "service" ADD COLUMN "tls_port" INTEGER',
    'ALTER TABLE "service" ADD COLUMN "realm" VARCHAR(255) NOT NULL DEFAULT \'\'',
]


def up(migrator, db):
    for statement in STATEMENTS:
        db.execute_sql(statement)

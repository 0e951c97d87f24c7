"""What the outbound and toll-fraud provider tests share: a real sipd whose database
has trunks to Kamailio carriers (tests/provider/kamailio.py), outbound routes and
the toll-fraud policy, written with peewee before sipd starts (sipd reads routes,
trunks and limits at each call)."""

from __future__ import annotations

from contextlib import contextmanager

from tests.sip import callkit as ck

TRUNK_USER, TRUNK_PASSWORD = "acme1", "trunk-s3cret"
FAR = "998901234567"  # the far phone's number, as the route sends it
DIALLED = "9901234567"  # what the extension dials: 9, then the national number


@contextmanager
def database(server: ck.SipdServer):
    from core.config import load_settings
    from core.database import connect

    db = connect(load_settings({"PBX_DB": str(server.db_path), "PBX_REALM": ck.REALM}))
    try:
        yield db
    finally:
        db.close()


def office(server: ck.SipdServer, carriers: dict, *, routes=None, policy=None,
           extensions=None) -> None:
    """Trunks named after `carriers` (name -> Carrier, each with the trunk's digest
    account added), the routes [(name, patterns, [trunk names], emergency,
    caller_id)], the policy's columns and extensions' outbound_* columns."""
    from core.models import (
        Extension,
        OutboundPolicy,
        OutboundRoute,
        OutboundRouteTrunk,
        Trunk,
    )

    routes = routes if routes is not None else [
        ("emergency", "10[1-4]", list(carriers), True, ""),
        ("mobile", "998+9|9XXXXXXXX", list(carriers), False, "712223344"),
        ("world", "9|00.", list(carriers), False, ""),
    ]
    with database(server):
        for name, carrier in carriers.items():
            carrier.add_subscriber(TRUNK_USER, TRUNK_PASSWORD)
            Trunk.create(name=name, host=carrier.host, port=carrier.port, username=TRUNK_USER,
                         password=TRUNK_PASSWORD, keepalive_interval=0)
        for position, (name, patterns, trunks, emergency, caller_id) in enumerate(routes):
            route = OutboundRoute.create(name=name, position=position, patterns=patterns,
                                         emergency=emergency, caller_id=caller_id)
            for index, trunk in enumerate(trunks):
                OutboundRouteTrunk.create(route=route, trunk=Trunk.get(name=trunk),
                                          position=index)
        OutboundPolicy.insert(id=1, **(policy or {"home_country": "998"})).on_conflict_replace(
        ).execute()
        for number, columns in (extensions or {}).items():
            Extension.update(**columns).where(Extension.number == number).execute()


def rows(server: ck.SipdServer, table: str) -> list[dict]:
    import sqlite3

    with sqlite3.connect(server.db_path) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(r) for r in connection.execute(f"SELECT * FROM {table} ORDER BY id")]


def far_phone(carrier, number: str = FAR, scenario: str = "callee_answer.xml") -> ck.Sipp:
    """A sipp UAS "in the outside world": the carrier forwards INVITEs for `number` to it."""
    run = ck.callee(carrier.address, number, scenario, ring_ms=300, register_first=False)
    carrier.route_to(number, f"{ck.LOOPBACK}:{run.local_port}")
    return run


def user(uri_or_header: str) -> str:
    """The user part of a SIP URI or a From/To/PAI header value."""
    text = uri_or_header.split("sip:", 1)[1]
    return text.split("@", 1)[0]

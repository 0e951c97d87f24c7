"""The routing step reading a real database (StoreDirectory), as sipd runs it: the
same plans as the tables of test_routing.py give for the same settings."""

from __future__ import annotations

import time

from core import forwarding, groups
from core.config import load_settings
from core.database import connect
from core.models import Binding, Extension
from sipd.routing.decide import decide
from sipd.routing.directory import StoreDirectory
from tests.support import database_with
from tests.unit.test_routing import shape


def test_plans_from_the_database(tmp_path):
    path = database_with(tmp_path / "pbx.db", ("1001", "1002", "1003", "1004"),
                         "Correct-Horse-Battery-9")
    database = connect(load_settings({"PBX_DB": str(path)}))
    try:
        now = time.time()
        for number in ("1002", "1003"):
            Binding.create(extension=Extension.by_number(number), aor=f"sip:{number}@x",
                           contact=f"sip:{number}@127.0.0.1:5999", source_host="127.0.0.1",
                           source_port=5999, transport="UDP", expires_at=now + 300,
                           call_id=f"c{number}", cseq=1)
        groups.create_group("600", "Sales", ["1002", "1003", "1004"], fallback="1001")
        groups.create_group("601", "Support", ["1003", "1002"], strategy="hunt",
                            ring_time=20, member_time=15)
        forwarding.set_forward("1001", "no_answer", "600", after=10)
        forwarding.set_dnd("1003", True)

        def plan(dialled, calls=None):
            directory = StoreDirectory(now, lambda n: (calls or {}).get(n, 0))
            return shape(decide("1004", dialled, directory, now))

        # 1001 -> (no answer) 600 -> (fallback) 1001: a loop, refused once it comes round
        assert plan("1001") == ("ring 1001 10s [no answer: ring 1002 30s via Sales [busy: "
                                "refuse 482 FAILED; no answer: refuse 482 FAILED; "
                                "unavailable: refuse 482 FAILED]]")
        # 1003 on DND and 1004 not registered: skipped
        # and 1001's own no-answer forward leads back to 600
        fallback = "ring 1001 10s [no answer: refuse 482 FAILED]"
        assert plan("600") == (f"ring 1002 30s via Sales [busy: {fallback}; no answer: "
                               f"{fallback}; unavailable: {fallback}]")
        assert plan("601") == "ring 1002 15s via Support"
        assert plan("601", {"1002": 1}) == "refuse 480 FAILED"
        assert plan("1003") == "refuse 486 BUSY"
        assert plan("1999") == "refuse 404 FAILED"
    finally:
        database.close()

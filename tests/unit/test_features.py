"""Feature codes carried out (sipd/apps/features.py) on a real database, as sipd runs
them: the change and its audit row written together under sipd's write lock, and a
refusal that says why and changes nothing."""

from __future__ import annotations

import pytest

from core.config import load_settings
from core.database import connect
from core.models import AuditEntry, Extension
from sipd.apps.features import carry_out
from sipd.routing.plan import Feature
from tests.support import database_with

PASSWORD = "Correct-Horse-Battery-9"


@pytest.fixture
def database(tmp_path):
    path = database_with(tmp_path / "pbx.db", ("1001", "1002"), PASSWORD)
    database = connect(load_settings({"PBX_DB": str(path)}))
    yield database
    database.close()


def state(number: str) -> tuple:
    extension = Extension.by_number(number)
    return extension.dnd, extension.forward_always


def test_each_code_changes_the_extension_and_is_audited(database):
    assert carry_out(Feature("dnd_on", "1001")) == (200, "OK")
    assert state("1001") == (True, "")
    assert carry_out(Feature("forward_on", "1001", "1002")) == (200, "OK")
    assert state("1001") == (True, "1002")
    assert carry_out(Feature("forward_off", "1001")) == (200, "OK")
    assert carry_out(Feature("dnd_off", "1001")) == (200, "OK")
    assert state("1001") == (False, "")
    audit = [(a.actor, a.action, a.source, a.detail) for a in
             AuditEntry.select().where(AuditEntry.actor == "phone:1001").order_by(AuditEntry.id)]
    assert audit == [
        ("phone:1001", "extension.dnd", "feature code", "none -> DND"),
        ("phone:1001", "extension.forward", "feature code", "DND -> DND, always -> 1002"),
        ("phone:1001", "extension.forward", "feature code", "DND, always -> 1002 -> DND"),
        ("phone:1001", "extension.dnd", "feature code", "DND -> none"),
    ]


@pytest.mark.parametrize("target, phrase", [
    ("1001", "Forbidden: forward: 1001 cannot forward to itself"),
    ("1999", "Forbidden: forward: 1999 is neither an extension nor a ring group"),
])
def test_a_forward_that_cannot_be_is_refused_with_why(database, target, phrase):
    assert carry_out(Feature("forward_on", "1001", target)) == (403, phrase)
    assert state("1001") == (False, "")
    assert not AuditEntry.select().where(AuditEntry.actor == "phone:1001").exists()

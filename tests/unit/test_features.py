"""Feature codes from a phone, decided (sipd/routing/decide.py) and carried out
(sipd/apps/features.py) on a real SQLite database: what changes, what the call is
answered with, the audit row, and a refusal or a locked database changing nothing."""

from __future__ import annotations

import sqlite3

import pytest

from core import accounts, groups
from core.models import AuditEntry, Extension, db
from sipd import dblock
from sipd.apps.features import carry_out
from sipd.routing.decide import decide
from sipd.routing.directory import StoreDirectory
from sipd.routing.plan import Feature, Refuse

NOW = 1_700_000_000.0


@pytest.fixture
def office(database):
    for number in ("1001", "1002", "1003"):
        accounts.create_extension(number, "pbx.test", generate=True)
    groups.create_group("600", "Sales", ["1002", "1003"])
    return database


def dial(caller: str, code: str):
    step = decide(caller, code, StoreDirectory(NOW, lambda n: 0), NOW)
    if isinstance(step, Refuse):
        return step.status, step.phrase
    assert isinstance(step, Feature)
    return carry_out(step, source="127.0.0.1:5070/UDP")


def state(number: str) -> tuple:
    e = Extension.by_number(number)
    return e.dnd, e.forward_always


@pytest.mark.parametrize(("codes", "answers", "after"), [
    (["*78"], [(200, "OK: do not disturb on")], (True, "")),
    (["*78", "*79"], [(200, "OK: do not disturb on"), (200, "OK: do not disturb off")],
     (False, "")),
    (["*721002"], [(200, "OK: calls forwarded to 1002")], (False, "1002")),
    (["*72600"], [(200, "OK: calls forwarded to 600")], (False, "600")),
    (["*721002", "*73"], [(200, "OK: calls forwarded to 1002"), (200, "OK: forward always off")],
     (False, "")),
    (["*721001"], [(403, "Forbidden: an extension cannot forward to itself")], (False, "")),
    (["*721999"], [(403, "Forbidden: 1999 is neither an extension nor a ring group")],
     (False, "")),
    (["*72"], [(484, "Address Incomplete: dial *72 and the number to forward to")], (False, "")),
    (["*70"], [(484, "Address Incomplete: unknown feature code *70")], (False, "")),
])
def test_feature_codes(office, codes, answers, after):
    assert [dial("1001", code) for code in codes] == answers
    assert state("1001") == after
    assert state("1002") == (False, "")


def test_each_change_is_audited_as_the_phones(office):
    dial("1001", "*78")
    dial("1001", "*721002")
    rows = [(a.actor, a.action, a.target, a.source, a.detail)
            for a in AuditEntry.select().where(AuditEntry.actor.startswith("phone:"))
            .order_by(AuditEntry.id)]
    assert rows == [
        ("phone:1001", "extension.dnd", "1001", "127.0.0.1:5070/UDP", "do not disturb on"),
        ("phone:1001", "extension.forward", "1001", "127.0.0.1:5070/UDP",
         "calls forwarded to 1002"),
    ]


def test_what_the_routing_step_let_through_is_checked_again_when_written(office):
    """The target may be deleted between the decision and the write: core/forwarding
    refuses it then, with its reason, and nothing is written (no audit row either)."""
    step = decide("1001", "*721003", StoreDirectory(NOW, lambda n: 0), NOW)
    groups.update_group("600", members=["1002"])
    accounts.delete_extension("1003")
    before = AuditEntry.select().count()
    assert carry_out(step) == (403, "Forbidden: 1003 is no extension or ring group, and no outbound route takes it")
    assert state("1001") == (False, "")
    assert AuditEntry.select().count() == before


def test_a_locked_database_is_503_and_changes_nothing(office, settings, monkeypatch):
    conn = db.connection()
    dblock.no_busy_wait(conn)  # as sipd's connection: the wait is on the loop
    monkeypatch.setattr(dblock, "_wait", 0.05)
    other = sqlite3.connect(settings.db_path)
    other.execute("BEGIN IMMEDIATE")  # pbxctl ext import, say, holds the write lock
    try:
        assert carry_out(Feature("dnd_on", "1001")) == (
            503, "Service Unavailable: database busy, try again")
    finally:
        other.rollback()
        other.close()
    assert state("1001") == (False, "")
    assert carry_out(Feature("dnd_on", "1001")) == (200, "OK: do not disturb on")


def test_an_unknown_step_is_484(office):
    assert carry_out(Feature("redial", "1001")) == (484, "Address Incomplete: unknown feature code")

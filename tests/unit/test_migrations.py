"""The migration runner: idempotent, and no migration left behind when numbers arrive out of order."""

from core import migrations
from core.config import load_settings
from core.database import connect
from core.models import SchemaVersion


def test_all_applied_once(tmp_path):
    database = connect(load_settings({"PBX_DB": str(tmp_path / "a.db")}))
    numbers = [number for number, _ in migrations.available()]
    assert migrations.applied_versions(database) == set(numbers)
    assert migrations.migrate(database) == []


def test_a_lower_number_recorded_late_is_still_applied(tmp_path):
    database = connect(load_settings({"PBX_DB": str(tmp_path / "b.db")}), migrate=False)
    numbers = [number for number, _ in migrations.available()]
    assert 4 in numbers and numbers[-1] > 4
    # A database made from a checkout that had every migration but 0004 (the audit log,
    # which no later migration builds on: 0005 alters 0002's call table, 0007 indexes
    # 0003's ban table, and 0006 writes to the audit log only when it renames an admin).
    skipped = 4
    database.create_tables([SchemaVersion])
    for number, name in migrations.available():
        if number != skipped:
            module = __import__(f"core.migrations.{name}", fromlist=["up"])
            module.up(None, database)
            SchemaVersion.create(version=number)
    assert migrations.migrate(database) == [skipped]
    assert migrations.applied_versions(database) == set(numbers)

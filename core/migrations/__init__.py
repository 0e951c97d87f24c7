"""Numbered schema migrations and the tiny runner that applies them.

Each module `NNNN_name.py` has `up(migrator, db)`; the runner applies, in
number order and in one transaction each, every one not yet recorded in
`schema_version` (not only those above the highest: branches merged out of
order must not leave a migration behind). Running it again is a no-op, so
`pbxctl init` and both daemons call it at start.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

from playhouse.migrate import SqliteMigrator

from core.models import SchemaVersion

_NAME = re.compile(r"^(\d{4})_\w+$")


def available() -> list[tuple[int, str]]:
    found = []
    for module in pkgutil.iter_modules(__path__):
        match = _NAME.match(module.name)
        if match:
            found.append((int(match.group(1)), module.name))
    return sorted(found)


def current_version(database) -> int:
    database.create_tables([SchemaVersion], safe=True)
    latest = SchemaVersion.select().order_by(SchemaVersion.version.desc()).first()
    return latest.version if latest else 0


def applied_versions(database) -> set[int]:
    database.create_tables([SchemaVersion], safe=True)
    return {row.version for row in SchemaVersion.select(SchemaVersion.version)}


def migrate(database) -> list[int]:
    """Apply pending migrations; return the numbers applied."""
    applied = []
    done = applied_versions(database)
    migrator = SqliteMigrator(database)
    for number, name in available():
        if number in done:
            continue
        module = importlib.import_module(f"{__name__}.{name}")
        with database.atomic():
            module.up(migrator, database)
            SchemaVersion.create(version=number)
        applied.append(number)
    return applied

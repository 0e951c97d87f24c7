"""Call recording per extension (issue 13 item 5): the setting pbxctl and the
panel change, and the retention both sipd and pbxctl apply. sipd records
(sipd/recording.py); the media process writes the files."""

from __future__ import annotations

import os
import time
from pathlib import Path

from core.accounts import get_extension
from core.models import Call, Extension, db


def set_record(number: str, on: bool) -> Extension:
    with db.atomic():
        extension = get_extension(number)
        (Extension.update(record_calls=bool(on), updated_at=time.time())
         .where(Extension.id == extension.id).execute())
    return get_extension(extension.number)


def recorded(numbers) -> bool:
    """Whether any of the extensions `numbers` has its calls recorded.

    Asked by sipd on every answered call: one plain statement, since peewee's
    query building cost more than the rest of the answer (bench/outbound.py)."""
    numbers = tuple(n for n in numbers if n)
    if not numbers:
        return False
    row = db.connection().execute(
        'SELECT 1 FROM "extension" WHERE "record_calls"'
        f' AND "number" IN ({", ".join("?" * len(numbers))}) LIMIT 1', numbers).fetchone()
    return row is not None


def file_of(directory: str, name: str) -> Path | None:
    """The file of a call's recording (`call.recording`, relative to
    PBX_RECORDING_DIR), or None when the name would lead outside the directory
    (it comes from the row sipd wrote, never from a URL; this is defence in depth)."""
    if not name or not directory:
        return None
    root = Path(directory).resolve()
    path = (root / name).resolve()
    return path if path.is_relative_to(root) and path != root else None


def expired(directory: str, days: int, now: float) -> list[str]:
    """The recordings (paths relative to `directory`) older than `days` days."""
    if days <= 0 or not os.path.isdir(directory):
        return []
    limit = now - days * 86400
    root = Path(directory)
    return sorted(str(path.relative_to(root)) for path in root.rglob("*.wav")
                  if path.stat().st_mtime < limit)


def remove(directory: str, names: list[str]) -> int:
    """Delete the files and forget them on their calls' rows; how many went."""
    gone = []
    for name in names:
        try:
            (Path(directory) / name).unlink()
        except FileNotFoundError:
            pass
        except OSError:
            continue
        gone.append(name)
    for start in range(0, len(gone), 500):
        Call.update(recording="").where(Call.recording.in_(gone[start:start + 500])).execute()
    return len(gone)

"""Opening the database: bind the proxy, migrate, and the generated secret."""

from __future__ import annotations

import os
import secrets
from contextlib import nullcontext
from pathlib import Path

from core import migrations
from core.config import ConfigError, Settings
from core.models import Setting, db, open_database


def connect(settings: Settings, migrate: bool = True, shared: bool = False):
    """Open (creating if needed) the SQLite database and bring its schema up to date.
    `shared`: one connection for the whole process (see open_database)."""
    path = Path(settings.db_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"PBX_DB: cannot create {path.parent}: {error.strerror}") from None
    database = open_database(str(path), shared=shared)
    try:
        database.connect(reuse_if_open=True)
    except Exception as error:  # peewee wraps sqlite3's errors
        raise ConfigError(f"PBX_DB: cannot open {path}: {error}") from None
    if migrate:
        migrations.migrate(database)
    return database


def secret_key(settings: Settings) -> str:
    """PBX_SECRET_KEY, or in a checkout one generated once and kept in the database.

    It keys the panel's sessions and sipd's nonces, so it must survive restarts;
    on a server (PBX_SERVER=1) it is required and never generated here.
    """
    if settings.secret_key:
        return settings.secret_key
    if settings.server:
        raise ConfigError("PBX_SECRET_KEY must be set on a server")
    row = Setting.get_or_none(Setting.key == "secret_key")
    if row is None:
        Setting.insert(
            key="secret_key", value=secrets.token_urlsafe(48)
        ).on_conflict_ignore().execute()
        row = Setting.get(Setting.key == "secret_key")
    return row.value


def ensure_private(path: str) -> None:
    """The database holds credential hashes: readable by its owner only."""
    for suffix in ("", "-wal", "-shm"):
        try:
            os.chmod(path + suffix, 0o600)
        except FileNotFoundError:
            pass


def atomic():
    """The transaction of one operation of core (core/groups.py, core/forwarding.py).

    peewee's own (BEGIN IMMEDIATE, core/models.py), or, when the caller already
    began one on the connection without peewee, that one, joined: sipd takes the
    write lock on its event loop (sipd/dblock.py) and then calls core inside it,
    where a second BEGIN would fail.
    """
    if db.transaction_depth() == 0 and db.connection().in_transaction:
        return nullcontext()
    return db.atomic()

"""Create the SQLite database of the Kamailio reference registrar.

The schema is Debian's own (/usr/share/kamailio/db_sqlite/standard-create.sql
and auth_db-create.sql from kamailio-sqlite-modules), so auth_db finds the
table versions it checks. Each subscriber gets HA1 = MD5(user:realm:password)
in column ha1 and HA1b = MD5(user@realm:realm:password) in ha1b; the password
column stays empty (kamailio.cfg reads ha1 with calculate_ha1=0).

    python bench/kamailio/make_db.py OUT.db --count 2000 --realm pbx.bench --csv users.csv

writes OUT.db and, with --csv, the matching sipp injection file.
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import sys
from pathlib import Path

SCHEMA_DIR = Path("/usr/share/kamailio/db_sqlite")
SCHEMA_FILES = ("standard-create.sql", "auth_db-create.sql")


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def make_db(path: Path, users: list[tuple[str, str]], realm: str,
            schema_dir: Path = SCHEMA_DIR) -> Path:
    """(Re)create `path` with a subscriber row per (number, password)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    missing = [name for name in SCHEMA_FILES if not (schema_dir / name).exists()]
    if missing:
        raise SystemExit(f"{schema_dir}: missing {', '.join(missing)} "
                         "(install the Debian package kamailio-sqlite-modules)")
    connection = sqlite3.connect(path)
    try:
        for name in SCHEMA_FILES:
            connection.executescript((schema_dir / name).read_text())
        connection.executemany(
            "INSERT INTO subscriber (username, domain, password, ha1, ha1b) "
            "VALUES (?, ?, '', ?, ?)",
            [(number, realm, _md5(f"{number}:{realm}:{password}"),
              _md5(f"{number}@{realm}:{realm}:{password}")) for number, password in users],
        )
        connection.commit()
    finally:
        connection.close()
    return path


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchlib import bench_users, users_csv

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", type=Path)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--realm", default="pbx.bench")
    parser.add_argument("--csv", type=Path, help="also write the sipp injection file here")
    args = parser.parse_args(argv)
    users = bench_users(args.count)
    make_db(args.db, users, args.realm)
    if args.csv:
        users_csv(args.csv, users)
    print(f"{args.db}: {args.count} subscribers under realm {args.realm}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Extensions from a CSV file (`pbxctl ext import`): read, check everything, then write.

The file is read and every row checked (number, name, password policy,
duplicates in the file and in the database) and every HA1 computed before the
database is touched, so one bad row changes nothing and the write itself can
then only fail for a reason outside the file (a full disk, I/O, a number
created in the panel meanwhile). The write is one transaction: all rows or,
after a rollback, none, also if the process is killed half-way.

That transaction holds SQLite's write lock, which sipd needs for every
REGISTER, so it does nothing but insert rows prepared beforehand: 100,000
extensions (with their 100,000 audit rows) in about half a second, where the
row-by-row version took 87 s (docs/security.md, probe finding 9). MAX_ROWS
bounds it; sipd waits for the lock without blocking its event loop
(sipd/dblock.py).
"""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from peewee import IntegrityError

from core import audit
from core.accounts import DEFAULT_MAX_CALLS, AccountError, check_display_name, check_number
from core.credentials import generate_password, ha1_pair, password_problem
from core.models import AuditEntry, Extension, RingGroup, db

# Per cell: numbers, names (100) and passwords are short; a longer cell is a
# wrong file or a mistake, and gets its own message instead of "not a CSV".
MAX_CELL = 1000
# Per file. 200,000 rows keep the write transaction near one second on the
# reference machine; a larger directory can be imported in several files.
MAX_ROWS = 200_000
MAX_BYTES = 64 * 1024 * 1024
COLUMNS = "number,name,password"


class CsvImportError(AccountError):
    """A file that cannot be imported; the message names the file and the row."""


@dataclass(frozen=True)
class NewExtension:
    row: int  # in the file, counted as a spreadsheet counts them (the header is row 1)
    number: str
    name: str
    password: str
    generated: bool
    ha1: dict  # realm, ha1_md5, ha1_sha256


def read_file(path: str) -> bytes:
    name = Path(path).name
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as error:
        raise CsvImportError(f"cannot read {path}: {error.strerror}") from None
    if len(data) > MAX_BYTES:
        raise CsvImportError(f"{name}: larger than {MAX_BYTES // 1024 // 1024} MB; split it")
    return data


def parse(data: bytes, name: str) -> list[tuple[int, list[str]]]:
    """(row, cells) of every non-blank row but the header, cells stripped."""
    try:
        # utf-8-sig: what Excel's "CSV UTF-8" writes begins with a byte-order mark.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise CsvImportError(
            f"{name}: line {line}: not UTF-8 text (byte 0x{data[error.start]:02x}); "
            "save the file as CSV UTF-8"
        ) from None
    rows = []
    reader = csv.reader(io.StringIO(text, newline=""))
    limit = csv.field_size_limit(MAX_CELL)  # process-wide: put back below
    number = 0
    try:
        for number, cells in enumerate(reader, start=1):
            cells = [cell.strip() for cell in cells]
            if any(cells):
                rows.append((number, cells))
    except csv.Error as error:
        raise CsvImportError(f"{name}: row {number + 1}: {_csv_problem(error)}") from None
    finally:
        csv.field_size_limit(limit)
    if rows and rows[0][1][0].lower() == "number":
        rows = rows[1:]
    if len(rows) > MAX_ROWS:
        raise CsvImportError(
            f"{name}: {len(rows)} rows; at most {MAX_ROWS} can be imported at once, split it"
        )
    return rows


def _csv_problem(error: csv.Error) -> str:
    message = str(error)
    if message.startswith("field larger than field limit"):
        return f"a cell is longer than {MAX_CELL} characters, the limit"
    return f"not valid CSV ({message})"


def check(
    rows: list[tuple[int, list[str]]], realm: str, existing: set[str], name: str,
    generate: Callable[[], str] = generate_password, groups: Collection[str] = (),
) -> list[NewExtension]:
    """Every row checked and made ready to insert, or CsvImportError naming the
    first bad row (and how many more there are). `groups`: the ring groups' numbers,
    which no extension may take."""
    ready: list[NewExtension] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    groups = set(groups)
    for row, cells in rows:
        try:
            ready.append(_check_row(row, cells, realm, existing, seen, generate, groups))
        except AccountError as error:
            problems.append(f"row {row}: {error}")
    if problems:
        more = len(problems) - 1
        also = f" ({more} more row{'s' if more > 1 else ''} with problems)" if more else ""
        raise CsvImportError(f"{name}: {problems[0]}{also}; nothing was imported")
    return ready


def _check_row(row, cells, realm, existing, seen, generate, groups) -> NewExtension:
    if len(cells) != 3:
        raise AccountError(f"expected {COLUMNS} (3 cells separated by commas), got "
                           f"{len(cells)} cell{'s' if len(cells) != 1 else ''}")
    number, display, password = cells
    number = check_number(number)
    display = check_display_name(display)
    if number in existing:
        raise AccountError(f"extension {number} already exists")
    if number in groups:
        raise AccountError(f"{number} is a ring group's number")
    if number in seen:
        raise AccountError(f"extension {number} is also in row {seen[number]}")
    seen[number] = row
    generated = not password
    if generated:
        password = generate()
    else:
        problem = password_problem(number, password)
        if problem:
            raise AccountError(f"password {problem}")
    return NewExtension(row, number, display, password, generated, ha1_pair(number, realm,
                                                                             password))


# An imported extension has no forwards and no DND (migration 0011), in the model's order;
# its digest challenges are the PBX's ("", migration 0012).
ROUTING_DEFAULTS = {
    "dnd": False, "forward_always": "", "forward_busy": "", "forward_no_answer": "",
    "forward_no_answer_after": 20, "forward_unavailable": "",
}


def existing_numbers() -> set[str]:
    return {number for (number,) in Extension.select(Extension.number).tuples()}


def group_numbers() -> set[str]:
    return {number for (number,) in RingGroup.select(RingGroup.number).tuples()}


def write(ready: list[NewExtension], actor: str, source: str, name: str,
          now: float | None = None) -> None:
    """Insert the checked rows and their audit rows in one transaction."""
    if not ready:
        return
    now = time.time() if now is None else now
    extensions = [
        {"number": e.number, "name": e.name, "enabled": True, "max_calls": DEFAULT_MAX_CALLS,
         **ROUTING_DEFAULTS, **e.ha1, "digest_algorithms": "", "created_at": now,
         "updated_at": now}
        for e in ready
    ]
    audits = [
        audit.values(actor, "extension.create", e.number, source, ", ".join(filter(None, [
            f"name {e.name!r}" if e.name else "",
            "generated password" if e.generated else "password set",
            f"imported from {name}",
        ])), now)
        for e in ready
    ]
    extensions = [_with_defaults(Extension, row) for row in extensions]
    statements = [
        (_insert_sql(model, rows), [tuple(row.values()) for row in rows])
        for model, rows in ((Extension, extensions), (AuditEntry, audits))
    ]
    try:
        with db.atomic():  # BEGIN IMMEDIATE (core/models.py); nothing but the inserts inside
            # A ring group made while the file was checked (a handful of rows to read).
            taken = group_numbers().intersection(e.number for e in ready)
            if taken:
                first = next(e for e in ready if e.number in taken)
                raise CsvImportError(
                    f"{name}: row {first.row}: {first.number} became a ring group's number "
                    "while the file was being checked; nothing was imported")
            cursor = db.cursor()
            for sql, params in statements:
                cursor.executemany(sql, params)
    except (IntegrityError, sqlite3.IntegrityError):  # peewee's, or the driver's own
        # Checked free before, so someone created one of these numbers since
        # (the panel, another pbxctl); the rollback left everything as it was.
        taken = existing_numbers()
        first = next((e for e in ready if e.number in taken), None)
        if first is None:
            raise
        raise CsvImportError(
            f"{name}: row {first.row}: extension {first.number} was created while the file "
            "was being checked; nothing was imported"
        ) from None


def _with_defaults(model, row: dict) -> dict:
    """`row` in the model's column order, with the defaults of the columns it does
    not name (as peewee's insert adds them): columns later issues add to the model
    need no change here."""
    out = {}
    for field in model._meta.sorted_fields:
        if field.name in row:
            out[field.name] = row[field.name]
        elif field.default is not None:
            out[field.name] = field.default() if callable(field.default) else field.default
    return out


def _insert_sql(model, rows: list[dict]) -> str:
    """The INSERT of one row, written by peewee (so in the database's own dialect),
    to run for all rows with executemany: peewee's insert_many built its SQL for
    some 20 µs a row, inside the transaction (8 times what SQLite itself took)."""
    sql, params = model.insert(rows[0]).sql()
    if params != list(rows[0].values()):  # the dicts must be in the model's column order
        raise AssertionError(f"{model.__name__}: columns out of order: {params}")
    return sql

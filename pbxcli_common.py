"""What the modules of pbxctl share (pbxcli.py, pbxcli_routing.py): the error a
command raises, opening the database, the audit row of a change, tables."""

from __future__ import annotations

from core.config import Settings


class CliError(Exception):
    """One line on stderr and exit status 1 (pbxcli.main)."""


def open_db(settings: Settings):
    from core.database import connect, ensure_private

    database = connect(settings)
    ensure_private(settings.db_path)
    return database


def audit_change(action: str, target: str, detail: str = "") -> None:
    """The audit row of a change, written in the change's transaction (core/audit.py)."""
    from core import audit

    audit.record(audit.cli_actor(), action, target, audit.cli_source(), detail)


def printable(cell) -> str:
    """What a phone sent may hold terminal escapes: shown as \\xNN, never run."""
    return "".join(
        c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"
        for c in str(cell)
    )


def table(rows) -> None:
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(
                cell.ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


def noun(sub, name: str, help: str):
    """`pbxctl NAME ACTION ...`: the subparsers its verbs are added to (see `verb`)."""
    return sub.add_parser(name, help=help).add_subparsers(
        dest=f"{name}_command", required=True, metavar="ACTION")


def verb(actions, name: str, func, help: str, *positionals: str):
    """One ACTION of a noun running func(args, settings), with its positional arguments
    (a name given as "name:HELP" gets that help); returns its parser for the options."""
    parser = actions.add_parser(name, help=help)
    for positional in positionals:
        dest, _, text = positional.partition(":")
        parser.add_argument(dest, help=text or None)
    parser.set_defaults(func=func)
    return parser

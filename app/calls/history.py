"""Call history queries and the CSV export, shared by the history page and its download.

Dates are the admin's calendar days in the server's zone: "from" is the start
of that day, "to" includes the whole day.
"""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import date, datetime, timedelta

from core.models import Call

# The history page's words for its columns (and pbxctl calls' headings).
CSV_COLUMNS = ("start", "answer", "end", "caller", "callee", "talk seconds", "outcome",
               "hung up by", "SIP status", "reason")
# CSV injection: a spreadsheet runs a cell that begins with one of these as a
# formula, so what a phone sent (a display name, a number, a reason) must stay text.
FORMULA_CHARS = "=+-@"
# ...and it may read that beginning past leading blanks (" =1+1", from a
# Request-URI's %20), or past a separator: a spreadsheet whose list separator is
# ";" or a tab splits ";=1+1" into an empty cell and "=1+1", and one that ignores
# quotes starts a new row at a line break. So a formula character is looked for
# after any run of blanks and these, at the start and after each separator.
_SEPARATORS = ",;\t\r\n"
_BLANKS = r"\s\x00-\x1f\x7f\u200b-\u200d\u2060\ufeff"
_LEADING_FORMULA = re.compile(rf"^[{_BLANKS}{_SEPARATORS}]*[{re.escape(FORMULA_CHARS)}]")
_INNER_FORMULA = re.compile(rf"([{_SEPARATORS}][{_BLANKS}{_SEPARATORS}]*)"
                            rf"(?=[{re.escape(FORMULA_CHARS)}])")


def day_start(day: date) -> float:
    return time.mktime(datetime(day.year, day.month, day.day).timetuple())


def filtered(extension: str = "", since: date | None = None, until: date | None = None,
             disposition: str = ""):
    """Calls matching the filter, newest first."""
    query = Call.select()
    if extension:
        query = query.where((Call.caller == extension) | (Call.callee == extension))
    if since:
        query = query.where(Call.started_at >= day_start(since))
    if until:
        query = query.where(Call.started_at < day_start(until + timedelta(days=1)))
    if disposition:
        query = query.where(Call.disposition == disposition)
    return query.order_by(Call.started_at.desc(), Call.id.desc())


class Page:
    """One page of a query: its rows, and where the others are."""

    def __init__(self, query, number: int, size: int):
        self.total = query.count()
        self.pages = max(1, -(-self.total // size))
        self.number = min(max(1, number), self.pages)
        self.rows = list(query.paginate(self.number, size))
        self.first = (self.number - 1) * size + 1 if self.total else 0
        self.last = self.first + len(self.rows) - 1 if self.rows else 0

    @property
    def has_prev(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages


def page_number(value: str | None) -> int:
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


def csv_cell(value) -> str:
    """`value` as a cell no spreadsheet runs: "'" before each place a formula could start.

    The apostrophe is how a spreadsheet itself marks a cell as text; one inside a
    cell stands where a separator-splitting reader would begin a new cell.
    """
    text = "" if value is None else str(value)
    # A cell that begins with a tab or a line break is guarded whatever follows
    # (OWASP's list: some readers drop them).
    if text.startswith(("\t", "\r", "\n")) or _LEADING_FORMULA.match(text):
        text = "'" + text
    return _INNER_FORMULA.sub(r"\1'", text)


def _csv_time(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def csv_row(call: Call) -> list[str]:
    return [csv_cell(value) for value in (
        _csv_time(call.started_at),
        _csv_time(call.answered_at),
        _csv_time(call.ended_at),
        call.caller,
        call.callee,
        round(call.talk_seconds),
        call.disposition or "",
        call.hangup_by or "",
        call.sip_status if call.sip_status is not None else "",
        call.reason,
    )]


def csv_lines(query):
    """The CSV, a line at a time (a long history is never held in memory whole)."""
    buffer = io.StringIO()
    # Every cell quoted: a separator inside one (a display name "Smith, John")
    # stays inside it for any reader that honours quotes.
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    for call in query.iterator():
        writer.writerow(csv_row(call))
        yield flush()

"""Call history queries and the CSV export, shared by the history page and its download.

Dates are the admin's calendar days in the server's zone: "from" is the start
of that day, "to" includes the whole day.
"""

from __future__ import annotations

import csv
import io
import time
from datetime import date, datetime, timedelta

from core.models import Call

CSV_COLUMNS = ("start", "answer", "end", "caller", "callee", "talk seconds", "disposition",
               "hangup by", "SIP status", "reason")
# A spreadsheet runs a cell beginning with one of these as a formula (CSV injection):
# what a phone sent (a display name, a reason) must stay text.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


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
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


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
    writer = csv.writer(buffer)

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

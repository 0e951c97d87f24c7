"""The call page's timeline and the history show each kind of event sipd records, in the
admin's language: here an IVR menu that hands its call on to an extension
(sipd/b2bua/handover.py) after business hours sent the call to the menu.

The rows are written by sipd's own history writer (sipd/history.py), with the
events as the routing step and the hand-over make them (sipd/routing/plan.py Event).
"""

from __future__ import annotations

import re
import time
from html import unescape

import pytest

from sipd.history import History
from sipd.routing.plan import Event

RECORD = {
    "caller": "998901112233",
    "caller_name": "",
    "callee": "700",
    "caller_source": "203.0.113.5:5060/UDP",
}


@pytest.fixture
def handed_on(rows):
    """A call to 700 (business hours office, open, to ivr:main); its key 1 handed the
    call on to 1002, who answered."""
    rows.extension("1002", name="Bob")
    history = History(spawn_later=lambda *args: None)  # written by flush() below
    now = time.time() - 30
    row = history.opened(now, "handover-1@203.0.113.5", RECORD)
    history.events(row, now, [Event("hours", by="hours:office", target="ivr:main", detail="open")])
    history.answered(row, now + 1, "", "PCMU/8000")
    # As Handovers.start records it.
    history.events(row, now + 5, [Event("handover", target="1002", detail="application ivr")])
    history.answered(row, now + 8, "sip:1002@192.0.2.20:5060", "PCMU/8000", "1002")
    history.ended(row, now + 20, "ANSWERED", "caller", None, "caller hung up")
    assert history.flush()
    return row


def text_of(html: str) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))).strip()


def timeline(page: str) -> list[tuple[str, str]]:
    return [
        (kind, text_of(what))
        for kind, what in re.findall(
            r'<tr class="event-(\w+)">.*?<td data-label="[^"]*">(.*?)</td>\s*</tr>', page, re.S
        )
    ]


def test_the_call_page_shows_the_handover(admin_client, handed_on):
    page = admin_client.get(f"/calls/{handed_on}").data.decode()
    assert timeline(page) == [
        ("hours", "business hours hours:office → ivr:main (open)"),
        ("handover", "handed on → 1002 Bob (by an IVR menu)"),
    ]


def test_the_history_shows_it_under_the_call(admin_client, handed_on):
    page = admin_client.get("/calls/").data.decode()
    row = page[page.index(f'id="call-{handed_on}"') :]
    row = row[: row.index("</tr>")]
    assert "handed on → 1002 Bob (by an IVR menu)" in text_of(row)


@pytest.mark.parametrize(
    "language, hours, handover",
    [
        (
            "ru",
            "рабочее время hours:office → ivr:main (открыто)",
            "передан дальше → 1002 Bob (меню IVR)",
        ),
        ("uz", "ish vaqti hours:office → ivr:main (ochiq)", "uzatildi → 1002 Bob (IVR menyusi)"),
    ],
)
def test_in_the_admins_language(admin_client, handed_on, language, hours, handover):
    admin_client.post("/account/language", data={"language": language})
    page = admin_client.get(f"/calls/{handed_on}").data.decode()
    assert timeline(page) == [("hours", hours), ("handover", handover)]

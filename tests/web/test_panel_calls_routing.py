"""Routing on the calls pages (issue 11 item 8): a live call ringing a group shows the
group and the members ringing now (call.ringing), an answered one who answered
(call.answered_by); the history shows the group, who answered and the call's
CallEvent rows (forwards, transfers), and each call has its own page.

Call rows are written in the shape sipd's history writes them (panel_testing.Rows);
the end-to-end test with a real call through a group is the executor's.
"""

from __future__ import annotations

import re
import time

import pytest

from core.groups import create_group
from core.models import CallEvent


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def cell(page: str, row_id: str, label: str) -> str:
    row = page[page.index(f'id="{row_id}"'):]
    row = row[:row.index("</tr>")]
    start = row.index(f'data-label="{label}"')
    return text_of(row[row.index(">", start) + 1:row.index("</td>", start)])


@pytest.fixture
def office(rows):
    rows.extension("1001", name="Alice")
    rows.extension("1002", name="Bob")
    rows.extension("1003", name="Carol")
    rows.extension("1004", name="Dan")
    create_group("600", "Sales", ["1002", "1003", "1004"])


def ringing_call(rows, **fields):
    values = {"state": "ringing", "answered_at": None, "started_at": time.time() - 3,
              "via_group": "600", "ringing": "1002,1003"}
    values.update(fields)
    return rows.call("1001", "600", live=True, **values)


# Live calls

def test_a_call_ringing_a_group_shows_the_group_and_who_rings_now(admin_client, office, rows):
    call = ringing_call(rows)
    page = admin_client.get("/calls/active").data.decode()
    callee = cell(page, f"live-{call.id}", "Callee")
    assert callee.startswith("600 Sales ring group"), callee
    assert "ringing now: 1002 Bob , 1003 Carol" in callee, callee
    assert "answered by" not in callee
    assert cell(page, f"live-{call.id}", "State") == "ringing"


def test_a_call_through_a_group_from_a_forward_says_via(admin_client, office, rows):
    # 1004 forwards to the group: the callee is 1004, the group is how it rings.
    call = rows.call("1001", "1004", live=True, state="ringing", answered_at=None,
                     via_group="600", ringing="1002")
    callee = cell(admin_client.get("/calls/active").data.decode(), f"live-{call.id}", "Callee")
    assert callee == "1004 Dan via ring group 600 Sales ringing now: 1002 Bob", callee


def test_an_answered_group_call_shows_who_answered(admin_client, office, rows):
    call = ringing_call(rows, state="answered", answered_at=time.time() - 1, ringing="",
                        answered_by="1003")
    page = admin_client.get("/calls/active").data.decode()
    callee = cell(page, f"live-{call.id}", "Callee")
    assert callee == "600 Sales ring group answered by 1003 Carol", callee
    assert cell(page, f"live-{call.id}", "State") == "talking"


def test_a_plain_call_shows_no_routing_lines(admin_client, office, rows):
    call = rows.call("1001", "1002", live=True, answered_by="1002")
    callee = cell(admin_client.get("/calls/active").data.decode(), f"live-{call.id}", "Callee")
    assert callee == "1002 Bob"


def test_the_poll_carries_the_group_the_ringing_members_and_who_answered(admin_client, office,
                                                                         rows):
    ringing = ringing_call(rows)
    answered = ringing_call(rows, state="answered", answered_at=time.time(), ringing="",
                            answered_by="1002")
    calls = {c["id"]: c for c in admin_client.get("/calls/active.json").get_json()["calls"]}
    assert calls[ringing.id]["via_group"] == "600"
    assert calls[ringing.id]["via_group_name"] == "Sales"
    assert calls[ringing.id]["callee_name"] == "Sales"
    assert calls[ringing.id]["ringing"] == [["1002", "Bob"], ["1003", "Carol"]]
    assert calls[ringing.id]["answered_by"] == ""
    assert calls[answered.id]["ringing"] == []
    assert (calls[answered.id]["answered_by"], calls[answered.id]["answered_by_name"]) == (
        "1002", "Bob")


def test_the_script_knows_the_words_in_the_admins_language(admin_client, office, rows):
    ringing_call(rows)
    admin_client.post("/account/language", data={"language": "ru"})
    page = admin_client.get("/calls/active").data.decode()
    texts = re.search(r"data-texts='([^']*)'", page).group(1)
    for english in ("ring group", "via ring group", "ringing now:", "answered by"):
        assert f'"{english}": ' in texts.replace("&#34;", '"'), english
    assert "сейчас звонят:" in page and "группа вызова" in page


# History

@pytest.fixture
def routed(office, rows):
    """1001 called 1004, which forwards on no answer to the group; 1003 answered it,
    then transferred it to 1002."""
    call = rows.call("1001", "1004", via_group="600", answered_by="1003")
    now = time.time()
    CallEvent.create(call=call.id, at=now - 60, kind="forwarded", by="1004", target="600",
                     detail="no answer")
    CallEvent.create(call=call.id, at=now - 50, kind="group", target="600",
                     detail="ringall")
    CallEvent.create(call=call.id, at=now - 20, kind="transferred", by="1003", target="1002")
    plain = rows.call("1002", "1003")
    return call, plain


def test_history_shows_group_answered_by_and_events_under_the_call(admin_client, routed):
    call, plain = routed
    page = admin_client.get("/calls/").data.decode()
    callee = cell(page, f"call-{call.id}", "Callee")
    assert callee == ("1004 via ring group 600 Sales answered by 1003 Carol"
                      " forwarded 1004 Dan → 600 Sales (no answer)"
                      " ring group → 600 Sales (ringall)"
                      " transferred 1003 Carol → 1002 Bob"), callee
    assert cell(page, f"call-{plain.id}", "Callee") == "1003"
    assert f'href="/calls/{call.id}"' in page


def test_a_calls_page_shows_its_route(admin_client, routed):
    call, plain = routed
    page = admin_client.get(f"/calls/{call.id}").data.decode()

    def fact(name):
        start = page.index(f'<dd id="{name}">') + len(f'<dd id="{name}">')
        return text_of(page[start:page.index("</dd>", start)])

    assert fact("via-group") == "600 Sales"
    assert fact("answered-by") == "1003 Carol"
    events = re.findall(r'<tr class="event-(\w+)">', page)
    assert events == ["forwarded", "group", "transferred"]
    table = text_of(page[page.index('id="events"'):page.index("</table>")])
    assert "transferred 1003 Carol → 1002 Bob" in table
    page = admin_client.get(f"/calls/{plain.id}").data.decode()
    assert "the call went straight to its callee" in page


def test_an_unknown_call_is_a_404(admin_client):
    assert admin_client.get("/calls/99999").status_code == 404
    assert admin_client.get(f"/calls/{2**63}").status_code == 404


def test_a_viewer_may_look_at_a_call(client, auth, routed):
    call, _ = routed
    auth.login_viewer()
    assert client.get(f"/calls/{call.id}").status_code == 200


def test_a_transfer_shows_on_the_live_call_as_it_happens(admin_client, office, rows):
    # A blind transfer's new call (sipd/b2bua/transfer.py): 1002 put 1001 through to 1003.
    call = rows.call("1001", "1003", live=True, state="ringing", answered_at=None,
                     started_at=time.time() - 2)
    CallEvent.create(call=call.id, at=time.time(), kind="transferred", by="1002",
                     target="1003", detail="blind from call 7")
    page = admin_client.get("/calls/active").data.decode()
    callee = cell(page, f"live-{call.id}", "Callee")
    assert "transferred by 1002 Bob → 1003 Carol (blind from call 7)" in callee, callee
    shown = admin_client.get("/calls/active.json").get_json()["calls"]
    assert [c["transfers"] for c in shown if c["id"] == call.id] == [
        [["1002", "Bob", "1003", "Carol", "blind from call 7"]]]

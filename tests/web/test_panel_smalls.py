"""The smaller things a trial hit (issue 15, item 7), with Flask's test client:
the audit log's filters, the history's date labels, names beside numbers on
the live calls page and in its JSON, and a hang-up that asks first."""

from __future__ import annotations

import re
import time
from datetime import datetime

import pytest
from panel_testing import ADMIN, FakeControl, Rows, csrf_token, make_app

from core import audit
from core.models import AuditEntry, db


def stamp(text: str) -> float:
    return time.mktime(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").timetuple())


def table_of(page: str, table_id: str) -> str:
    return page[page.index(f'id="{table_id}"'):page.index("</table>", page.index(f'id="{table_id}"'))]


# -- the audit log's filters ------------------------------------------------------------


@pytest.fixture
def entries(app):
    with db.connection_context(), db.atomic():
        audit.record("alice", "extension.create", "1001", "192.0.2.5", now=stamp("2026-03-01 09:00:00"))
        audit.record("cli:root", "extension.delete", "1002", "local", now=stamp("2026-03-01 09:30:59"))
        audit.record("cli:deploy", "ban.lift", "203.0.113.7", "ssh 192.0.2.9",
                     now=stamp("2026-03-02 14:00:00"))
        audit.record("alice", "call.hangup", "1003 → 1004", "192.0.2.5", now=stamp("2026-03-03 08:00:00"))
        audit.record("bob_50%", "extension.edit", "1005", "192.0.2.6", now=stamp("2026-03-03 09:00:00"))


def audit_targets(client, query: str) -> list[str]:
    response = client.get("/security/audit?" + query)
    assert response.status_code == 200, response.data.decode()
    page = response.data.decode()
    if 'id="audit"' not in page:
        return []
    rows = table_of(page, "audit").split('<td data-label="What">')[1:]
    return [re.search(r'<span class="mono">([^<]+)</span>', row).group(1) for row in rows]


@pytest.mark.parametrize(("query", "targets"), [
    ("actor=alice", ["1003 → 1004", "1001"]),
    ("actor=ALICE", ["1003 → 1004", "1001"]),              # names are not case-sensitive
    ("actor=cli", ["203.0.113.7", "1002"]),                # every pbxctl change
    ("actor=_50%25", ["1005"]),                            # _ and % are letters here
    ("actor=a_", []),                                    # not "al" in alice
    ("action=ban.lift", ["203.0.113.7"]),
    ("action=extension.create&actor=cli", []),
    ("since=2026-03-01T09:30&until=2026-03-02T14:00", ["203.0.113.7", "1002"]),  # both ends in
    ("since=2026-03-01T09:31&until=2026-03-02T13:59", []),
    ("since=2026-03-03 08:00", ["1005", "1003 → 1004"]),  # typed by hand, with a space
    ("until=2026-03-01T09:00&action=extension.create", ["1001"]),
])
def test_the_audit_log_filters(admin_client, entries, query, targets):
    assert [t for t in audit_targets(admin_client, query) if t != ADMIN[0]] == targets


@pytest.mark.parametrize(("query", "field", "message"), [
    ("since=yesterday", "since", "Enter a date and time, e.g. 2026-03-01 09:30."),
    ("until=2026-13-01T09:00", "until", "Enter a date and time, e.g. 2026-03-01 09:30."),
    ("since=0001-01-01T00:00", "since", "Enter a time from 1970-01-01 to 2999-12-31."),
    ("since=2026-03-02T00:00&until=2026-03-01T00:00", "until", "The end is before the start."),
    ("action=everything", "action", "Not a valid choice."),
    ("actor=" + "x" * 81, "actor", "Field cannot be longer than 80 characters."),
])
def test_a_bad_audit_filter_is_a_form_error(admin_client, entries, query, field, message):
    response = admin_client.get("/security/audit?" + query)
    assert response.status_code == 400
    page = response.data.decode()
    form = page[page.index('id="audit-filter"'):page.index("</form>", page.index('id="audit-filter"'))]
    field_html = form[form.index(f'name="{field}"'):]
    assert f'<p class="error">{message}</p>' in field_html.split('<div class="field')[0]
    assert 'id="audit"' not in page and "Correct the filter to see entries." in page


def test_the_audit_filter_is_kept_across_pages(admin_client):
    with db.atomic():
        for number in range(120):
            audit.record("cli:root", "extension.create", f"{2000 + number}", "local",
                         now=stamp("2026-03-01 09:00:00") + number)
        audit.record("alice", "extension.create", "3000", "local", now=stamp("2026-03-01 10:00:00"))
    first = admin_client.get("/security/audit?actor=cli:root&action=extension.create").data.decode()
    assert "1–50 of 120 entries · page 1 of 3" in first
    assert re.search(r'rel="next" href="/security/audit\?page=2&amp;actor=cli:root&amp;'
                     r'action=extension.create"', first), first
    last = admin_client.get("/security/audit?page=3&actor=cli:root&action=extension.create")
    page = last.data.decode()
    assert "101–120 of 120 entries" in page and "2000" in page and "3000" not in page
    # The form shows what it filters by, and the choices name each action as the table does.
    assert 'name="actor" placeholder="anyone" type="text" value="cli:root"' in page
    assert '<option selected value="extension.create">created extension (extension.create)</option>' in page
    assert AuditEntry.select().count() == 122


def test_the_audit_filter_labels(admin_client):
    page = admin_client.get("/security/audit").data.decode()
    for name, label in (("actor", "Who"), ("action", "What"), ("since", "Since"), ("until", "Until")):
        assert f'<label for="{name}">{label}</label>' in page
    assert 'type="datetime-local"' in page


# -- the history's date filters ----------------------------------------------------------


def test_the_history_date_filters_are_named_as_dates(admin_client):
    page = admin_client.get("/calls/").data.decode()
    assert '<label for="since">Date from</label>' in page
    assert '<label for="until">Date to</label>' in page
    assert ">From</label>" not in page and ">To</label>" not in page


# -- names beside numbers on the live calls ----------------------------------------------


@pytest.fixture
def live_calls(rows):
    rows.extension("1002", name="Front desk")
    rows.extension("1003", name="Warehouse")
    rows.extension("1004")  # no name
    # caller_name is what sipd recorded at the start; the panel's name now wins.
    between = rows.call("1002", "1003", live=True, caller_name="Reception (old)")
    unnamed = rows.call("1004", "1002", live=True, caller_name="")
    outside = rows.call("+998901112233", "1003", live=True, caller_name="Trunk caller")
    return between, unnamed, outside


def test_live_calls_json_has_names(admin_client, live_calls):
    between, unnamed, outside = live_calls
    calls = {c["id"]: c for c in admin_client.get("/calls/active.json").get_json()["calls"]}
    assert (calls[between.id]["caller_name"], calls[between.id]["callee_name"]) == (
        "Front desk", "Warehouse")
    assert (calls[unnamed.id]["caller_name"], calls[unnamed.id]["callee_name"]) == ("", "Front desk")
    assert (calls[outside.id]["caller_name"], calls[outside.id]["callee_name"]) == (
        "Trunk caller", "Warehouse")


def test_live_calls_page_has_names(admin_client, live_calls):
    between, unnamed, outside = live_calls
    page = admin_client.get("/calls/active").data.decode()

    def cell(call, label):
        row = page[page.index(f'id="live-{call.id}"'):]
        row = row[:row.index("</tr>")]
        return re.search(rf'<td data-label="{label}">(.*?)(?:<div|</td>)', row).group(1)

    key = '<span class="key">{}</span>'
    assert cell(between, "Caller") == key.format("1002") + ' <span class="subtle">Front desk</span>'
    assert cell(between, "Callee") == key.format("1003") + ' <span class="subtle">Warehouse</span>'
    assert cell(unnamed, "Caller") == key.format("1004")
    assert cell(unnamed, "Callee") == key.format("1002") + ' <span class="subtle">Front desk</span>'
    assert cell(outside, "Callee") == key.format("1003") + ' <span class="subtle">Warehouse</span>'


# -- hanging up asks first ---------------------------------------------------------------


@pytest.fixture
def fake_sipd():
    with FakeControl() as control:
        yield control


@pytest.fixture
def csrf_app(tmp_path, fake_sipd):
    app = make_app(tmp_path, WTF_CSRF_ENABLED=True, CONTROL_SOCKET=fake_sipd.path)
    yield app
    if not db.is_closed():
        db.close()


def test_hang_up_asks_before_it_hangs_up(csrf_app, fake_sipd):
    client = csrf_app.test_client()
    token = csrf_token(client.get("/login").data.decode())
    client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": token})
    rows = Rows()
    rows.extension("1002", name="Front desk")
    call = rows.call("1002", "1003", live=True)

    # The live page's button is a link to the question, not a form that hangs up.
    live = client.get("/calls/active").data.decode()
    row = live[live.index(f'id="live-{call.id}"'):]
    row = row[:row.index("</tr>")]
    assert f'<a class="button small danger" href="/calls/{call.id}/hangup">Hang up</a>' in row
    assert "<form" not in row and 'method="post"' not in row

    question = client.get(f"/calls/{call.id}/hangup")
    assert question.status_code == 200
    page = question.data.decode()
    assert "<h1>Hang up this call?</h1>" in page
    assert '<span class="key">1002</span> <span class="subtle">Front desk</span>' in page
    assert '<a class="button secondary" href="/calls/active">Cancel</a>' in page
    assert f'<form method="post" action="/calls/{call.id}/hangup" class="buttons">' in page
    assert fake_sipd.commands == []  # asking changes nothing

    confirmed = client.post(f"/calls/{call.id}/hangup", data={"csrf_token": csrf_token(page)},
                            follow_redirects=True)
    assert "The call 1002 → 1003 is being hung up." in confirmed.data.decode()
    assert fake_sipd.commands == [{"command": "hangup", "id": call.id}]
    assert AuditEntry.select().where(AuditEntry.action == "call.hangup").count() == 1


def test_the_question_about_an_ended_call_says_it_ended(admin_client, rows):
    call = rows.call("1002", "1003")
    response = admin_client.get(f"/calls/{call.id}/hangup", follow_redirects=True)
    assert "The call 1002 → 1003 has already ended." in response.data.decode()
    assert "Hang up this call?" not in response.data.decode()
    assert admin_client.get("/calls/999/hangup").status_code == 404


def test_the_question_is_for_admins(client, auth, rows):
    call = rows.call(live=True)
    auth.login_viewer()
    assert client.get(f"/calls/{call.id}/hangup").status_code == 403

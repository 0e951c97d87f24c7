"""Calls: history with filters, pages and CSV export; live calls as a page and as JSON;
hanging up through sipd's control socket (a fake one here); the media settings."""

import csv
import dataclasses
import io
import time
from datetime import date, datetime

import pytest
from panel_testing import ADMIN, VIEWER, FakeControl, Rows, make_app

from app.calls.history import CSV_COLUMNS, csv_cell
from core.models import AuditEntry, Call, db


def at(day: str, hour: int = 12, minute: int = 0) -> float:
    """A local time, as the history's date filter reads it."""
    return datetime.fromisoformat(f"{day}T{hour:02d}:{minute:02d}:00").timestamp()


def rows_of(page: str) -> list[str]:
    """The ids of the call rows on a history page, in order."""
    import re

    return re.findall(r'<tr id="call-(\d+)"', page)


# History

def test_history_empty(admin_client):
    response = admin_client.get("/calls/")
    assert response.status_code == 200
    assert b"No calls yet." in response.data


def test_history_lists_calls_newest_first(admin_client, rows):
    old = rows.call("1002", "1003", caller_name="Alice", started_at=at("2026-03-01"),
                    answered_at=at("2026-03-01") + 5, ended_at=at("2026-03-01") + 125,
                    hangup_by="callee", reason="")
    busy = rows.call("1004", "1002", started_at=at("2026-03-02"), answered_at=None,
                     ended_at=at("2026-03-02") + 3, disposition="BUSY", sip_status=486,
                     hangup_by="callee", reason="Busy Here")
    live = rows.call("1005", "1006", live=True)
    page = admin_client.get("/calls/").data.decode()
    assert rows_of(page) == [str(live.id), str(busy.id), str(old.id)]
    row = page[page.index(f'id="call-{old.id}"'):page.index("</tr>", page.index(f'id="call-{old.id}"'))]
    for text in ("1002", "Alice", "1003", "2 min", "ANSWERED", "callee", "200"):
        assert text in row, text
    row = page[page.index(f'id="call-{busy.id}"'):page.index(f'id="call-{old.id}"')]
    assert "BUSY" in row and "486" in row and "Busy Here" in row and "—" in row
    assert "talking" in page  # the live call
    assert "3 calls" in page


@pytest.mark.parametrize(("query", "expected"), [
    ({"extension": "1002"}, ["a", "b", "d"]),  # as caller or as callee
    ({"extension": "1005"}, ["c"]),
    ({"extension": "100"}, []),  # a number, not a prefix
    ({"disposition": "ANSWERED"}, ["a", "c"]),
    ({"disposition": "NO ANSWER"}, ["d"]),
    ({"since": "2026-03-02"}, ["b", "c", "d"]),
    ({"until": "2026-03-02"}, ["a", "b", "c"]),  # the whole last day
    ({"since": "2026-03-02", "until": "2026-03-02"}, ["b", "c"]),
    ({"extension": "1002", "since": "2026-03-02", "disposition": "BUSY"}, ["b"]),
    ({"extension": " 1002 "}, ["a", "b", "d"]),
])
def test_history_filters(admin_client, rows, query, expected):
    calls = {
        "a": rows.call("1002", "1003", started_at=at("2026-03-01", 23, 59)),
        "b": rows.call("1004", "1002", started_at=at("2026-03-02", 0, 0), disposition="BUSY",
                       answered_at=None),
        "c": rows.call("1005", "1006", started_at=at("2026-03-02", 23, 59)),
        "d": rows.call("1002", "1007", started_at=at("2026-03-03", 0, 1),
                       disposition="NO ANSWER", answered_at=None),
    }
    response = admin_client.get("/calls/", query_string=query)
    assert response.status_code == 200
    shown = rows_of(response.data.decode())
    by_id = {str(call.id): name for name, call in calls.items()}
    assert sorted(by_id[i] for i in shown) == expected
    if not expected:
        assert b"No call matches this filter." in response.data


@pytest.mark.parametrize(("query", "message"), [
    ({"since": "yesterday"}, "Not a valid date value."),
    ({"since": "2026-03-05", "until": "2026-03-01"}, "The end date is before the start date."),
    ({"disposition": "<b>HACKED</b>"}, "Not a valid choice."),
    ({"extension": "1" * 65}, "Field cannot be longer than 64 characters."),
])
def test_history_refuses_a_bad_filter(admin_client, rows, query, message):
    rows.call()
    response = admin_client.get("/calls/", query_string=query)
    assert response.status_code == 400
    page = response.data.decode()
    assert message in page
    assert rows_of(page) == []  # nothing rather than everything
    assert "<b>HACKED" not in page
    assert admin_client.get("/calls/export.csv", query_string=query).status_code == 400


def test_history_pages(admin_client, rows):
    start = at("2026-03-01")
    Call.insert_many([
        {"call_id": f"c{i}", "caller": "1002", "callee": "1003", "caller_name": "",
         "caller_source": "", "callee_contact": "", "state": "ended", "started_at": start + i,
         "answered_at": start + i, "ended_at": start + i + 60, "disposition": "ANSWERED",
         "reason": "", "caller_media": "", "callee_media": "", "codec": ""}
        for i in range(120)
    ]).execute()
    rows.call("1004", "1005", started_at=start + 1000)  # filtered out below
    first = admin_client.get("/calls/?extension=1002").data.decode()
    ids = rows_of(first)
    assert len(ids) == 50
    assert "1–50 of 120 calls · page 1 of 3" in first
    assert 'href="/calls/?page=2&amp;extension=1002"' in first  # the filter goes along
    assert 'rel="prev"' not in first
    last = admin_client.get("/calls/?extension=1002&page=3").data.decode()
    assert len(rows_of(last)) == 20
    assert "101–120 of 120 calls · page 3 of 3" in last
    assert 'rel="next"' not in last
    seen = set(ids) | set(rows_of(admin_client.get("/calls/?extension=1002&page=2").data.decode()))
    assert len(seen | set(rows_of(last))) == 120  # no row twice, none missing
    # Past the end: the last page; not a number: the first.
    assert rows_of(admin_client.get("/calls/?extension=1002&page=99").data.decode()) == rows_of(last)
    assert rows_of(admin_client.get("/calls/?extension=1002&page=x").data.decode()) == ids
    assert 'href="/calls/export.csv?extension=1002"' in first


# CSV export

def read_csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.data.decode())))


def test_csv_has_the_filtered_set_on_every_page(admin_client, rows, tmp_path):
    answered = rows.call("1002", "1003", started_at=at("2026-03-01", 9), answered_at=at("2026-03-01", 9) + 4,
                         ended_at=at("2026-03-01", 9) + 4 + 95.6, hangup_by="callee",
                         reason="Normal, \"clearing\"\nsecond line")
    rows.call("1004", "1002", started_at=at("2026-03-02", 10), answered_at=None,
              ended_at=at("2026-03-02", 10) + 30, disposition="NO ANSWER", hangup_by="system",
              sip_status=480, reason="ring timeout")
    rows.call("1005", "1006", started_at=at("2026-03-02", 11))  # another extension
    live = rows.call("1002", "1007", live=True, started_at=time.time() - 30,
                     answered_at=time.time() - 20)
    response = admin_client.get("/calls/export.csv?extension=1002")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="calls-')
    table = read_csv(response)
    assert table[0] == list(CSV_COLUMNS) == [
        "start", "answer", "end", "caller", "callee", "talk seconds", "outcome",
        "hung up by", "SIP status", "reason"]
    assert len(table) == 4
    assert table[1][3:5] == ["1002", "1007"] and table[1][2] == "" and table[1][6] == ""
    assert 19 <= int(table[1][5]) <= 21  # a live call: talk time so far
    assert live.ended_at is None
    assert table[2] == ["2026-03-02 10:00:00", "", "2026-03-02 10:00:30", "1004", "1002", "0",
                        "NO ANSWER", "system", "480", "ring timeout"]
    assert table[3] == ["2026-03-01 09:00:00", "2026-03-01 09:00:04", "2026-03-01 09:01:39",
                        "1002", "1003", "96", "ANSWERED", "callee", "200",
                        'Normal, "clearing"\nsecond line']
    assert answered.id


def test_csv_is_not_paged(admin_client, rows, tmp_path):
    start = at("2026-03-01")
    Call.insert_many([
        {"call_id": f"c{i}", "caller": "1002", "callee": "1003", "caller_name": "",
         "caller_source": "", "callee_contact": "", "state": "ended", "started_at": start + i,
         "ended_at": start + i + 1, "disposition": "CANCELLED", "reason": "",
         "caller_media": "", "callee_media": "", "codec": ""}
        for i in range(130)
    ]).execute()
    assert len(read_csv(admin_client.get("/calls/export.csv?disposition=CANCELLED"))) == 131


@pytest.mark.parametrize(("value", "cell"), [
    ("=HYPERLINK(\"http://evil.example\",\"x\")", "'=HYPERLINK(\"http://evil.example\",\"x\")"),
    ("+4930123456", "'+4930123456"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
    # A tab or a line break is where a reader that splits at it starts a cell (or a
    # row): the part after it is guarded too (probe finding 10, tests/web/test_probe_panel.py).
    ("\t=1", "'\t'=1"),
    ("\r=1", "'\r'=1"),
    ("1002", "1002"),
    ("a=b", "a=b"),
    ("", ""),
    (None, ""),
    (486, "486"),
])
def test_csv_cell_defuses_formulas(value, cell):
    assert csv_cell(value) == cell


def test_csv_injection_from_a_phone_stays_text(admin_client, rows):
    rows.call("+4930123456", "1003", reason='=cmd|" /C calc"!A0', hangup_by="caller")
    rows.call("1002", "@1003", reason="-1+1", started_at=time.time() - 200)
    table = read_csv(admin_client.get("/calls/export.csv"))
    assert table[1][3] == "'+4930123456"
    assert table[1][9] == "'=cmd|\" /C calc\"!A0"
    assert table[2][4] == "'@1003" and table[2][9] == "'-1+1"
    for row in table[1:]:
        for value in row:
            assert not value.startswith(("=", "+", "-", "@")), value


def test_csv_needs_a_login(client):
    response = client.get("/calls/export.csv")
    assert response.status_code == 302 and response.location.startswith("/login")


# Live calls

def test_active_page_shows_live_calls_only(admin_client, rows):
    rows.call("1002", "1003")  # ended
    ringing = rows.call("1004", "1005", live=True, state="ringing", answered_at=None,
                        caller_name="Bob", started_at=time.time() - 7, caller_media="",
                        callee_media="", codec="")
    talking = rows.call("1006", "1007", live=True, started_at=time.time() - 200,
                        answered_at=time.time() - 125, caller_media="198.51.100.7:40002",
                        callee_media="192.0.2.20:41000", codec="opus/48000")
    page = admin_client.get("/calls/active").data.decode()
    assert 'id="live-' in page and f'id="live-{ringing.id}"' in page
    assert page.count('<tr id="live-') == 2
    # Oldest first: the call that has lasted longest is on top.
    assert page.index(f'id="live-{talking.id}"') < page.index(f'id="live-{ringing.id}"')
    row = page[page.index(f'id="live-{talking.id}"'):page.index(f'id="live-{ringing.id}"')]
    for text in ("1006", "1007", "talking", "2 min 5 s", "198.51.100.7:40002",
                 "192.0.2.20:41000", "opus/48000", "Hang up"):
        assert text in row, text
    row = page[page.index(f'id="live-{ringing.id}"'):]
    assert "ringing" in row and "Bob" in row and "7 s" in row
    assert "2 live calls" in page
    assert 'id="no-calls" hidden' in page


def test_active_page_empty(admin_client, rows):
    rows.call()
    page = admin_client.get("/calls/active").data.decode()
    assert "No calls right now." in page
    assert 'id="no-calls" hidden' not in page
    assert "0 live calls" in page


def test_active_page_script_is_local_and_named(admin_client):
    page = admin_client.get("/calls/active").data.decode()
    assert '<script src="/static/active_calls.js" defer></script>' in page
    assert page.count("<script") == 1  # nothing inline: the CSP would refuse it anyway
    assert '<meta http-equiv="refresh" content="5">' in page  # inside <noscript>
    script = admin_client.get("/static/active_calls.js")
    assert script.status_code == 200
    assert b"innerHTML" not in script.data  # rows are built from text nodes only
    csp = admin_client.get("/calls/active").headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp


def test_active_json(admin_client, rows):
    rows.call("1002", "1003")
    live = rows.call("1004", "1005", live=True, caller_name="Bob", started_at=time.time() - 70,
                     answered_at=time.time() - 61)
    response = admin_client.get("/calls/active.json")
    assert response.status_code == 200
    data = response.get_json()
    assert data["count"] == 1
    (call,) = data["calls"]
    assert call["id"] == live.id
    assert (call["caller"], call["caller_name"], call["callee"], call["state"]) == (
        "1004", "Bob", "1005", "answered")
    assert call["duration"] == "1 min 1 s"
    assert call["started"] == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(live.started_at))
    assert call["started_utc"].endswith(" UTC")
    assert call["caller_media"] == "192.0.2.10:40000"
    assert call["callee_media"] == "192.0.2.20:41000"
    assert call["hangup_url"] == f"/calls/{live.id}/hangup"


def test_active_json_without_a_login_is_a_401_not_a_redirect(client):
    response = client.get("/calls/active.json")
    assert response.status_code == 401
    assert response.get_json() == {"error": "Your session has expired. Please log in again."}


# Hanging up: these tests make their own app (another control socket), so they
# make rows with Rows() rather than the `rows` fixture, which would make another app.

@pytest.fixture
def fake_sipd():
    with FakeControl() as control:
        yield control


@pytest.fixture
def control_app(tmp_path, fake_sipd):
    app = make_app(tmp_path, CONTROL_SOCKET=fake_sipd.path)
    yield app
    if not db.is_closed():
        db.close()


def login(client, username=ADMIN[0], password=ADMIN[1]):
    client.post("/login", data={"username": username, "password": password})
    return client


def test_hang_up_sends_the_command_and_is_audited(control_app, fake_sipd):
    rows = Rows()
    client = login(control_app.test_client())
    call = rows.call("1002", "1003", live=True)
    response = client.post(f"/calls/{call.id}/hangup", environ_base={"REMOTE_ADDR": "198.51.100.9"})
    assert response.status_code == 302 and response.location == "/calls/active"
    assert fake_sipd.commands == [{"command": "hangup", "id": call.id}]
    page = client.get("/calls/active").data.decode()
    assert "The call 1002 → 1003 is being hung up." in page
    entry = AuditEntry.get(AuditEntry.action == "call.hangup")
    assert (entry.actor, entry.target, entry.source) == ("admin", "1002 → 1003", "198.51.100.9")
    assert call.call_id in entry.detail


def test_hang_up_with_sipd_down_says_why(tmp_path):
    rows = Rows()
    app = make_app(tmp_path, CONTROL_SOCKET=str(tmp_path / "nothing-here.sock"))
    client = login(app.test_client())
    call = rows.call("1002", "1003", live=True)
    response = client.post(f"/calls/{call.id}/hangup", follow_redirects=True)
    page = response.data.decode()
    assert "Could not hang up the call 1002 → 1003: sipd is not running (no control socket at" in page
    assert "nothing-here.sock" in page
    assert 'class="flash error"' in page
    assert AuditEntry.select().where(AuditEntry.action == "call.hangup").count() == 0
    db.close()


def test_hang_up_refused_by_sipd_says_why(tmp_path):
    rows = Rows()
    with FakeControl(reply=lambda command: {"ok": False, "error": "no such call"}) as control:
        app = make_app(tmp_path, CONTROL_SOCKET=control.path)
        client = login(app.test_client())
        call = rows.call(live=True)
        page = client.post(f"/calls/{call.id}/hangup", follow_redirects=True).data.decode()
    assert "Could not hang up the call 1002 → 1003: no such call" in page
    assert AuditEntry.select().where(AuditEntry.action == "call.hangup").count() == 0
    db.close()


def test_hang_up_an_ended_call_sends_nothing(control_app, fake_sipd):
    rows = Rows()
    client = login(control_app.test_client())
    call = rows.call("1002", "1003")
    page = client.post(f"/calls/{call.id}/hangup", follow_redirects=True).data.decode()
    assert "The call 1002 → 1003 has already ended." in page
    assert fake_sipd.commands == []


def test_hang_up_an_unknown_call_is_a_404(control_app, fake_sipd):
    client = login(control_app.test_client())
    assert client.post("/calls/999/hangup").status_code == 404
    assert fake_sipd.commands == []


def test_viewer_cannot_hang_up(control_app, fake_sipd):
    rows = Rows()
    client = login(control_app.test_client(), *VIEWER)
    call = rows.call(live=True)
    page = client.get("/calls/active").data.decode()
    assert f'id="live-{call.id}"' in page
    assert "Hang up" not in page and "/hangup" not in page
    assert 'data-hangup=""' in page
    assert client.get(f"/calls/{call.id}/hangup").status_code == 403  # not even the question
    assert client.post(f"/calls/{call.id}/hangup").status_code == 403
    assert fake_sipd.commands == []
    # The poll still shows it (looking is allowed).
    assert client.get("/calls/active.json").get_json()["count"] == 1


def test_hang_up_needs_the_csrf_token(tmp_path, fake_sipd):
    rows = Rows()
    from panel_testing import csrf_token

    app = make_app(tmp_path, WTF_CSRF_ENABLED=True, CONTROL_SOCKET=fake_sipd.path)
    client = app.test_client()
    token = csrf_token(client.get("/login").data.decode())
    client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": token})
    call = rows.call(live=True)
    assert client.post(f"/calls/{call.id}/hangup").status_code == 400
    assert fake_sipd.commands == []
    # The token comes with the page that asks "Hang up this call?".
    token = csrf_token(client.get(f"/calls/{call.id}/hangup").data.decode())
    assert client.post(f"/calls/{call.id}/hangup", data={"csrf_token": token}).status_code == 302
    assert fake_sipd.commands == [{"command": "hangup", "id": call.id}]
    db.close()


# Media settings

def test_settings_show_the_advertised_media(tmp_path):
    app = make_app(tmp_path, PUBLIC_ADDRESS="203.0.113.50", RTP_PORTS=(16384, 16483))
    client = login(app.test_client())
    page = client.get("/settings/").data.decode()
    media = page[page.index('id="media-settings"'):]
    assert "203.0.113.50" in media
    assert "16384–16483" in media and "100 ports" in media
    db.close()


def test_settings_say_when_the_address_is_detected(admin_client):
    page = admin_client.get("/settings/").data.decode()
    media = page[page.index('id="media-settings"'):]
    assert "(detected: " in media  # and how (tests/web/test_phone_settings.py)
    assert "10000–20000" in media


def test_settings_are_for_logged_in_users(client):
    assert client.get("/settings/").status_code == 302


def test_dates_are_calendar_days_in_local_time():
    from app.calls.history import day_start

    assert datetime.fromtimestamp(day_start(date(2026, 3, 1))) == datetime(2026, 3, 1)


def test_hang_up_speaks_the_real_sipd_protocol(tmp_path):
    """The real daemon's control socket: a call it does not carry is refused, with its words."""
    from tests.support import Sipd

    app = make_app(tmp_path)
    db.close()
    with Sipd(tmp_path / "pbx.db") as sipd:
        app.config["PBX_SETTINGS"] = dataclasses.replace(
            app.config["PBX_SETTINGS"], control_socket=str(sipd.run_dir / "sipd.sock"))
        client = login(app.test_client())
        call = Rows().call(live=True)  # in the database only: sipd never saw its INVITE
        page = client.post(f"/calls/{call.id}/hangup", follow_redirects=True).data.decode()
        assert "Could not hang up the call 1002 → 1003: no such call (it may have ended)" in page
    db.close()

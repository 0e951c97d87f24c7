"""Business hours in the panel: the list with whether each is open now (by its time zone,
else the server's PBX_TIMEZONE), create with opening rules as `pbxctl hours add --open`
takes them (read by core/hours.py), holidays, open and closed destinations; bad
rules, holidays, zones and destinations are form errors and nothing is saved; edit;
delete refused while something leads to them, as `pbxctl hours rm` refuses it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import time
from html import unescape
from zoneinfo import ZoneInfo

import pytest
from test_panel_ivr import errors

from core import ivr
from core.models import AuditEntry, Schedule, db

# 26 hours apart: at any moment their dates differ.
EAST, WEST = "Pacific/Kiritimati", "Etc/GMT+12"


@pytest.fixture
def office(rows):
    rows.extension("1001", name="Alice")
    rows.extension("1002", name="Bob")


def hours_form(
    name="office",
    rules="mon-fri 09:00-18:00\nsat 10:00-14:00",
    holidays="",
    in_destination="1001",
    out_destination="voicemail:1002",
    **fields,
):
    return {
        "name": name,
        "rules": rules,
        "holidays": holidays,
        "in_destination": in_destination,
        "out_destination": out_destination,
        "number": "",
        "timezone": "",
        **fields,
    }


def today_in(zone: str) -> str:
    return dt.datetime.now(ZoneInfo(zone)).date().isoformat()


def row_of(page: str, name: str) -> str:
    start = page.index(f'id="hours-{name}"')
    return page[start : page.index("</tr>", start)]


def test_list_empty(admin_client):
    page = admin_client.get("/hours/").data.decode()
    assert "No business hours yet." in page and 'href="/hours/new"' in page
    assert 'aria-current="page">IVR & hours</a>' in page


def test_created_hours_are_listed_and_what_core_sees(admin_client, office):
    response = admin_client.post(
        "/hours/new",
        data=hours_form(
            rules="Mon-Fri 9:00-18:00\n\n  sat 10:00-14:00 ",
            holidays="2027-01-01, 2026-12-31",
            number="701",
            timezone="Asia/Tashkent",
        ),
    )
    assert response.status_code == 302 and response.headers["Location"] == "/hours/"
    schedule = ivr.get_schedule("office")
    assert ivr.rules_of(schedule) == ["mon-fri 09:00-18:00", "sat 10:00-14:00"]
    assert ivr.holidays_of(schedule) == ["2026-12-31", "2027-01-01"]
    assert (
        schedule.in_destination,
        schedule.out_destination,
        schedule.number,
        schedule.timezone,
    ) == ("1001", "voicemail:1002", "701", "Asia/Tashkent")
    (entry,) = AuditEntry.select().where(AuditEntry.action == "hours.create")
    assert entry.detail == ivr.describe_schedule(schedule)
    page = admin_client.get("/hours/").data.decode()
    assert "Business hours office created: calls reach them as hours:office." in unescape(page)
    row = row_of(page, "office")
    assert re.findall(r'<li class="mono">([^<]*)</li>', row) == [
        "mon-fri 09:00-18:00",
        "sat 10:00-14:00",
        "2026-12-31",
        "2027-01-01",
    ]
    assert "Alice" in row and "voicemail:1002" in row and "in Asia/Tashkent" in row
    expected = "yes" if ivr.is_open(schedule, time.time()) else "no"
    assert f'data-open="{expected}"' in row


def test_open_now_follows_the_rules_holidays_and_the_servers_zone(admin_client, app, office):
    app.config["PBX_SETTINGS"] = dataclasses.replace(app.config["PBX_SETTINGS"], timezone=EAST)
    admin_client.post("/hours/new", data=hours_form(name="always", rules="daily 00:00-24:00"))
    admin_client.post(
        "/hours/new",
        data=hours_form(name="holiday", rules="daily 00:00-24:00", holidays=today_in(EAST)),
    )
    # The same holiday in a zone where it is another day: open.
    admin_client.post(
        "/hours/new",
        data=hours_form(
            name="west", rules="daily 00:00-24:00", holidays=today_in(EAST), timezone=WEST
        ),
    )
    page = admin_client.get("/hours/").data.decode()
    assert 'data-open="yes"' in row_of(page, "always") and "open now" in row_of(page, "always")
    assert 'data-open="no"' in row_of(page, "holiday")
    assert "closed now" in row_of(page, "holiday") and f"in {EAST}" in row_of(page, "holiday")
    assert 'data-open="yes"' in row_of(page, "west") and f"in {WEST}" in row_of(page, "west")
    assert f"the server's: {EAST}" in unescape(page)
    # The server's zone is read when the page is drawn: no restart.
    app.config["PBX_SETTINGS"] = dataclasses.replace(app.config["PBX_SETTINGS"], timezone=WEST)
    page = admin_client.get("/hours/").data.decode()
    assert 'data-open="yes"' in row_of(page, "holiday")


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"rules": "mon-fri 9-18"}, "'mon-fri 9-18': '9' is not a time HH:MM."),
        ({"rules": "weekdays 09:00-18:00"}, "'weekdays' is not a day"),
        ({"rules": "mon 18:00-09:00"}, "closes at or before it opens"),
        ({"rules": "mon 09:00-25:00"}, "is not a time of day (00:00 to 24:00)"),
        ({"rules": ""}, "Business hours need at least one opening rule"),
        ({"holidays": "2027-13-01"}, "'2027-13-01': a holiday is a date YYYY-MM-DD."),
        ({"timezone": "Mars/Olympus"}, "'Mars/Olympus' is not a time zone"),
        ({"in_destination": "1009"}, "1009 is no extension or ring group, and no outbound route takes it."),
        ({"out_destination": "ivr:nope"}, "There is no IVR menu nope."),
        ({"out_destination": ""}, "This field is required."),
        ({"in_destination": "hours:office"}, "Business hours office cannot lead to themselves."),
        ({"number": "1002"}, "1002 is an extension."),
    ],
)
def test_bad_input_is_a_form_error_and_nothing_is_saved(admin_client, office, fields, expected):
    page = admin_client.post("/hours/new", data=hours_form(**fields)).data.decode()
    assert any(expected in error for error in errors(page)), errors(page)
    assert Schedule.select().count() == 0


def test_rule_errors_are_in_the_admins_language(admin_client, office):
    admin_client.post("/account/language", data={"language": "uz"})
    page = admin_client.post("/hours/new", data=hours_form(rules="mon-fri 9-18")).data.decode()
    (error,) = errors(page)
    assert error == "'mon-fri 9-18': '9' — SS:DD koʻrinishidagi vaqt emas."


def test_edit(admin_client, office):
    admin_client.post("/hours/new", data=hours_form(holidays="2027-01-01"))
    page = admin_client.get("/hours/office/edit").data.decode()
    assert "mon-fri 09:00-18:00\nsat 10:00-14:00</textarea>" in page
    assert "2027-01-01</textarea>" in page and 'name="name"' not in page
    response = admin_client.post(
        "/hours/office/edit",
        data=hours_form(
            rules="daily 08:00-20:00", holidays="", in_destination="1002", number="702"
        ),
    )
    assert response.status_code == 302, errors(response.data.decode())
    schedule = ivr.get_schedule("office")
    assert ivr.rules_of(schedule) == ["daily 08:00-20:00"] and ivr.holidays_of(schedule) == []
    assert (schedule.in_destination, schedule.number) == ("1002", "702")
    page = admin_client.post(
        "/hours/office/edit", data=hours_form(rules="daily 20:00-08:00", in_destination="1001")
    ).data.decode()
    assert any("closes at or before it opens" in e for e in errors(page))
    db.close()
    schedule = ivr.get_schedule("office")
    assert ivr.rules_of(schedule) == ["daily 08:00-20:00"] and schedule.in_destination == "1002"


def test_delete_and_refused_while_in_use(admin_client, office):
    admin_client.post("/hours/new", data=hours_form())
    admin_client.post("/hours/new", data=hours_form(name="night", in_destination="hours:office"))
    page = admin_client.get("/hours/office/delete").data.decode()
    assert "business hours night" in page and 'id="confirm-delete"' not in page
    page = admin_client.post("/hours/office/delete", follow_redirects=True).data.decode()
    assert "Business hours office are in use (business hours night)" in unescape(page)
    assert Schedule.select().count() == 2
    assert admin_client.post("/hours/night/delete").status_code == 302
    assert admin_client.post("/hours/office/delete").status_code == 302
    assert Schedule.select().count() == 0
    assert [
        e.target
        for e in AuditEntry.select()
        .where(AuditEntry.action == "hours.delete")
        .order_by(AuditEntry.id)
    ] == ["night", "office"]


def test_viewers_only_look(client, auth, office):
    auth.login()
    client.post("/hours/new", data=hours_form())
    auth.logout()
    auth.login_viewer()
    page = client.get("/hours/").data.decode()
    assert 'id="hours-office"' in page and "/hours/new" not in page
    assert client.get("/hours/new").status_code == 403
    assert client.post("/hours/office/delete").status_code == 403
    assert client.get("/hours/nope/edit").status_code == 403

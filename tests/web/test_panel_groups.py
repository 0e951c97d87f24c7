"""Ring groups in the panel (issue 11 items 3 and 8): the list, create, edit, delete with a
confirmation, members in the order of their positions, each change audited; what
core/groups.py refuses is the form's error, translated; viewers only look; CSRF.

A real temporary database per test (conftest.py); groups are read back through
the models the routing step reads.
"""

from __future__ import annotations

import re
from html import unescape

import pytest
from panel_testing import ADMIN, csrf_token, make_app

from core.groups import create_group
from core.models import AuditEntry, RingGroup, db


def audit_rows(action):
    return [(e.actor, e.target, e.detail)
            for e in AuditEntry.select().where(AuditEntry.action == action).order_by(AuditEntry.id)]


def group_form(number="600", name="Sales", strategy="ringall", ring_time="30", member_time="15",
               fallback="", members=(), **extra):
    """The form as a browser posts it; `members` are (position, extension) rows."""
    data = {"number": number, "name": name, "strategy": strategy, "ring_time": ring_time,
            "member_time": member_time, "fallback": fallback}
    for index, (position, extension) in enumerate(members):
        data[f"members-{index}-position"] = position
        data[f"members-{index}-extension"] = extension
    data.update(extra)
    return data


def members(number="600"):
    return RingGroup.by_number(number).member_numbers()


def form_errors(page: str) -> list[str]:
    return [unescape(re.sub(r"\s+", " ", m)) for m in re.findall(
        r'<div class="flash error" role="alert">([^<]*)</div>', page)]


def row_errors(page: str) -> list[str]:
    return [unescape(m) for m in re.findall(r'<p class="error">([^<]*)</p>', page)]


@pytest.fixture
def office(rows):
    rows.extension("1001", name="Alice")
    rows.extension("1002", name="Bob")
    rows.extension("1003", name="Carol")
    rows.extension("1004")


# The list

def test_list_empty(admin_client):
    page = admin_client.get("/groups/").data.decode()
    assert "No ring groups yet." in page
    assert 'href="/groups/new"' in page


def test_the_menu_names_ring_groups(admin_client):
    page = admin_client.get("/groups/").data.decode()
    assert '<a href="/groups/" aria-current="page">Ring groups</a>' in page


def test_list_shows_number_name_strategy_members_in_order_and_fallback(admin_client, office):
    create_group("601", "Support", ["1003", "1001"], strategy="hunt", ring_time=40,
                 member_time=10, fallback="1004")
    create_group("600", "Sales", ["1002", "1001", "1003"])
    page = admin_client.get("/groups/").data.decode()
    assert "2 ring groups" in page
    assert page.index('id="group-600"') < page.index('id="group-601"')
    sales = page[page.index('id="group-600"'):page.index('id="group-601"')]
    assert 'data-strategy="ringall"' in sales and "ring all" in sales and "Sales" in sales
    listed = re.findall(r'<li><span class="key">(\d+)</span>', sales)
    assert listed == ["1002", "1001", "1003"]
    assert '<span class="key">1002</span> <span class="subtle">Bob</span>' in sales
    assert "unavailable (480)" in sales  # no fallback
    support = page[page.index('id="group-601"'):]
    assert "hunt, 10 s each" in support and "rings for 40 s" in support
    assert re.findall(r'<li><span class="key">(\d+)</span>', support) == ["1003", "1001"]
    assert 'When nobody answers">' in support and '<span class="key">1004</span>' in support


def test_show_lists_members_in_order_with_who_is_skipped(admin_client, office, rows):
    from core.models import Extension

    create_group("600", "Sales", ["1003", "1001", "1002"], fallback="hangup")
    Extension.update(dnd=True).where(Extension.number == "1001").execute()
    Extension.update(enabled=False).where(Extension.number == "1002").execute()
    page = admin_client.get("/groups/600").data.decode()
    assert re.findall(r'<tr id="member-(\d+)">', page) == ["1003", "1001", "1002"]
    row_1001 = page[page.index('id="member-1001"'):page.index('id="member-1002"')]
    assert "DND" in row_1001
    assert "Disabled" in page[page.index('id="member-1002"'):]
    facts = page[page.index('id="group-facts"'):]
    assert "hang up" in facts
    assert 'href="/groups/600/edit"' in page and 'href="/groups/600/delete"' in page


def test_an_unknown_group_is_a_404(admin_client):
    response = admin_client.get("/groups/699")
    assert response.status_code == 404
    assert "There is no ring group 699." in response.data.decode()
    for path in ("/groups/699/edit", "/groups/699/delete"):
        assert admin_client.get(path).status_code == 404
        assert admin_client.post(path, data={}).status_code == 404


# Create

def test_create_page_has_blank_member_rows_numbered(admin_client):
    page = admin_client.get("/groups/new").data.decode()
    assert 'name="number"' in page
    assert re.search(r'<input checked[^>]*value="ringall"', page)
    positions = re.findall(r'name="members-(\d+)-position"[^>]*value="(\d+)"', page)
    assert positions == [("0", "1"), ("1", "2"), ("2", "3")]
    assert 'aria-label="Extension in row 1"' in page


def test_create_orders_members_by_their_positions_and_is_audited(admin_client, office):
    response = admin_client.post("/groups/new", data=group_form(
        strategy="hunt", ring_time="45", member_time="12", fallback="1004",
        members=[("2", "1003"), ("1", "1001"), ("", ""), ("3", "1002")]))
    assert response.status_code == 302 and response.location == "/groups/600"
    group = RingGroup.by_number("600")
    assert (group.name, group.strategy, group.ring_time, group.member_time, group.fallback) == (
        "Sales", "hunt", 45, 12, "1004")
    assert members() == ["1001", "1003", "1002"]
    assert audit_rows("group.create") == [(
        ADMIN[0], "600",
        "name 'Sales', hunt, members 1001,1003,1002, ring 45 s, member 12 s, fallback 1004")]
    page = admin_client.get("/groups/600").data.decode()
    assert "Ring group 600 created." in page
    assert re.findall(r'<tr id="member-(\d+)">', page) == ["1001", "1003", "1002"]


def test_rows_without_a_position_come_after_the_numbered_ones_in_their_order(admin_client,
                                                                              office):
    admin_client.post("/groups/new", data=group_form(
        members=[("", "1003"), ("5", "1002"), ("", "1004"), ("1", "1001")]))
    assert members() == ["1001", "1002", "1003", "1004"]


def test_a_group_needs_a_member(admin_client, office):
    response = admin_client.post("/groups/new", data=group_form(members=[("1", "")]))
    assert form_errors(response.data.decode()) == ["A ring group needs at least one member."]
    assert RingGroup.select().count() == 0


def test_more_rows_adds_blank_rows_and_saves_nothing(admin_client, office):
    response = admin_client.post("/groups/new", data=group_form(
        members=[("1", "1001"), ("2", "1002"), ("3", "")], more="More rows"))
    assert response.status_code == 200
    assert RingGroup.select().count() == 0
    page = response.data.decode()
    rows = re.findall(r'name="members-(\d+)-extension"[^>]*?(?:value="(\d*)")?[ >/]', page)
    assert len(rows) == 6
    assert 'value="1001"' in page and 'value="1002"' in page
    positions = re.findall(r'name="members-\d+-position"[^>]*value="(\d+)"', page)
    assert positions == ["1", "2", "3", "4", "5", "6"]


def test_rows_stop_at_a_limit(admin_client, office):
    from app.groups.forms import MAX_ROWS

    rows = [(str(n), "") for n in range(1, MAX_ROWS + 1)]
    response = admin_client.post("/groups/new", data=group_form(members=rows, more="More rows"))
    assert response.status_code == 200
    assert response.data.decode().count('class="member"') == MAX_ROWS
    # A crafted form with thousands of rows is read as far as the limit only.
    rows = [("1", "1001")] + [("", "1002")] * 5000
    response = admin_client.post("/groups/new", data=group_form(members=rows))
    assert form_errors(response.data.decode()) == ["A ring group has at most 100 members."]


def test_the_audit_log_page_names_the_change(admin_client, office):
    admin_client.post("/groups/new", data=group_form(members=[("1", "1001")]))
    page = admin_client.get("/security/audit").data.decode()
    assert "created ring group" in page and "600" in page


# What core refuses, and what the form refuses

def test_a_member_that_does_not_exist_is_said_and_nothing_is_created(admin_client, office):
    response = admin_client.post("/groups/new", data=group_form(
        members=[("1", "1001"), ("2", "1099")]))
    assert response.status_code == 200
    assert form_errors(response.data.decode()) == ["Member 1099 is not an extension."]
    assert RingGroup.select().count() == 0
    assert audit_rows("group.create") == []
    # What was typed is still there to correct.
    assert 'value="1099"' in response.data.decode()


def test_a_number_taken_by_an_extension_is_refused(admin_client, office):
    response = admin_client.post("/groups/new", data=group_form(number="1002"))
    assert form_errors(response.data.decode()) == [
        "1002 is an extension; a ring group needs a number of its own."]
    assert RingGroup.select().count() == 0


def test_a_number_taken_by_a_group_is_refused(admin_client, office):
    create_group("600", "Sales", ["1001"])
    response = admin_client.post("/groups/new", data=group_form(name="Other", members=[
        ("1", "1002")]))
    assert form_errors(response.data.decode()) == ["Ring group 600 already exists."]
    assert RingGroup.by_number("600").name == "Sales" and members() == ["1001"]


def test_a_fallback_that_names_nothing_is_refused(admin_client, office):
    response = admin_client.post("/groups/new", data=group_form(
        fallback="1999", members=[("1", "1001")]))
    assert form_errors(response.data.decode()) == [
        "1999 is no extension or ring group, and no outbound route takes it."]
    assert RingGroup.select().count() == 0


def test_an_extension_listed_twice_is_refused(admin_client, office):
    response = admin_client.post("/groups/new", data=group_form(
        members=[("1", "1001"), ("2", "1001")]))
    assert form_errors(response.data.decode()) == ["1001 is a member twice."]
    assert RingGroup.select().count() == 0


def test_a_group_that_falls_back_to_itself_is_refused(admin_client, office):
    create_group("600", "Sales", ["1001"])
    response = admin_client.post("/groups/600/edit", data=group_form(
        fallback="600", members=[("1", "1001")]))
    assert form_errors(response.data.decode()) == [
        "Ring group 600 cannot fall back to itself."]
    assert RingGroup.by_number("600").fallback == ""


@pytest.mark.parametrize(("fields", "message"), [
    ({"number": ""}, "This field is required."),
    ({"ring_time": ""}, "This field is required."),
    ({"ring_time": "soon"}, "Not a valid integer value."),
    ({"member_time": "x"}, "Not a valid integer value."),
    ({"strategy": "random"}, "Not a valid choice."),
    ({"name": ""}, "A ring group needs a name."),
    ({"ring_time": "2"}, "Ring time must be 5 to 300 seconds, got '2'."),
    ({"member_time": "121"}, "Time per member must be 5 to 120 seconds, got '121'."),
    ({"members-0-position": "first", "members-0-extension": "1001"},
     "Not a valid integer value."),
    ({"members-0-position": "0", "members-0-extension": "1001"},
     "Number must be between 1 and 999."),
])
def test_form_errors_are_shown_at_their_field(admin_client, office, fields, message):
    response = admin_client.post("/groups/new", data=group_form(**fields))
    assert response.status_code == 200
    assert message in row_errors(response.data.decode())
    assert RingGroup.select().count() == 0


def test_core_errors_are_translated(admin_client, office):
    from tools import catalogues

    admin_client.post("/account/language", data={"language": "ru"})
    response = admin_client.post("/groups/new", data=group_form(number="1002"))
    russian = catalogues.load("ru")[
        "%(number)s is an extension; a ring group needs a number of its own"].string
    assert form_errors(response.data.decode()) == [
        (russian % {"number": "1002"})[:1].upper() + (russian % {"number": "1002"})[1:] + "."]
    admin_client.post("/account/language", data={"language": "uz"})
    response = admin_client.post("/groups/new", data=group_form(members=[("1", "1099")]))
    uzbek = catalogues.load("uz")["member %(number)s is not an extension"].string % {
        "number": "1099"}
    assert form_errors(response.data.decode()) == [uzbek[:1].upper() + uzbek[1:] + "."]
    assert "Yangi qoʻngʻiroq guruhi" in admin_client.get("/groups/new").data.decode()


# Edit

def test_edit_shows_the_members_in_order_then_blank_rows(admin_client, office):
    create_group("600", "Sales", ["1003", "1001"], strategy="hunt")
    page = admin_client.get("/groups/600/edit").data.decode()
    assert 'name="number"' not in page  # the number stays
    values = re.findall(r'name="members-\d+-extension" type="text" value="(\d*)"', page)
    assert values == ["1003", "1001", "", "", ""], values
    positions = re.findall(r'name="members-\d+-position"[^>]*value="(\d+)"', page)
    assert positions == ["1", "2", "3", "4", "5"]
    assert 'value="Sales"' in page


def test_edit_reorders_adds_removes_and_is_audited(admin_client, office):
    create_group("600", "Sales", ["1001", "1002", "1003"])
    response = admin_client.post("/groups/600/edit", data=group_form(
        name="Sales desk", strategy="hunt", member_time="20", fallback="hangup",
        members=[("3", "1001"), ("2", ""), ("1", "1003"), ("4", "1004")]))
    assert response.status_code == 302 and response.location == "/groups/600"
    group = RingGroup.by_number("600")
    assert (group.name, group.strategy, group.member_time, group.fallback) == (
        "Sales desk", "hunt", 20, "hangup")
    assert members() == ["1003", "1001", "1004"]
    assert audit_rows("group.edit") == [(
        ADMIN[0], "600",
        "name 'Sales' -> 'Sales desk', strategy ringall -> hunt, member time 15 -> 20,"
        " fallback '' -> 'hangup', members 1001,1002,1003 -> 1003,1001,1004")]
    assert "Ring group 600 saved." in admin_client.get("/groups/600").data.decode()


def test_edit_refused_by_core_changes_nothing(admin_client, office):
    create_group("600", "Sales", ["1001", "1002"])
    response = admin_client.post("/groups/600/edit", data=group_form(
        name="Changed", members=[("1", "1002"), ("2", "1098")]))
    assert response.status_code == 200
    assert form_errors(response.data.decode()) == ["Member 1098 is not an extension."]
    assert RingGroup.by_number("600").name == "Sales" and members() == ["1001", "1002"]
    assert audit_rows("group.edit") == []


# Delete

def test_delete_asks_first_then_deletes_and_is_audited(admin_client, office):
    from core.forwarding import set_forward

    create_group("600", "Sales", ["1001", "1002"])
    create_group("601", "Support", ["1003"], fallback="600")
    set_forward("1004", "busy", "600")
    page = admin_client.get("/groups/600/delete").data.decode()
    assert "Delete ring group 600?" in page and "“Sales” will be removed" in page
    leading = page[page.index('id="leading-here"'):page.index("</ul>")]
    assert "the forwarding of 1004" in leading and "busy" in leading
    assert "where ring group 601 goes when nobody answers" in leading
    assert RingGroup.by_number("600") is not None
    response = admin_client.post("/groups/600/delete")
    assert response.status_code == 302 and response.location == "/groups/"
    assert RingGroup.by_number("600") is None
    from core.models import Extension, RingGroupMember

    assert [m.extension.number for m in RingGroupMember.select()] == ["1003"]  # 601's
    assert Extension.select().count() == 4  # the members stay
    assert Extension.by_number("1004").forward_busy == ""
    assert RingGroup.by_number("601").fallback == ""
    assert audit_rows("group.delete") == [(
        ADMIN[0], "600",
        "name 'Sales'; cleared forward on busy of 1004, fallback of ring group 601")]
    page = admin_client.get("/groups/").data.decode()
    assert "Ring group 600 deleted." in page
    assert "Turned off as well: forward on busy of 1004, fallback of ring group 601." in page


# Deleting an extension that is in a group (core.accounts.delete_extension)

def test_deleting_a_member_says_what_changes_with_it(admin_client, office):
    from core.forwarding import set_forward
    from core.models import Extension

    create_group("600", "Sales", ["1001", "1002"])
    set_forward("1003", "busy", "1002")
    page = admin_client.get("/extensions/1002/delete").data.decode()
    changed = page[page.index('id="changed-with-it"'):page.index("</ul>")]
    assert "it leaves ring group 600" in changed
    assert "the forwarding of 1003 to it is turned off" in changed
    response = admin_client.post("/extensions/1002/delete")
    assert response.status_code == 302 and Extension.by_number("1002") is None
    assert members() == ["1001"] and Extension.by_number("1003").forward_busy == ""
    assert "Changed with it: left ring group 600 (Sales), forward on busy of 1003." in \
        unescape(admin_client.get("/extensions/").data.decode())
    assert audit_rows("extension.delete") == [(
        ADMIN[0], "1002", "name 'Bob'; left ring group 600 (Sales), forward on busy of 1003")]


def test_deleting_a_groups_only_member_is_refused_with_the_reason(admin_client, office):
    from core.models import Extension

    create_group("600", "Sales", ["1001"])
    response = admin_client.post("/extensions/1001/delete")
    assert response.status_code == 200
    assert form_errors(response.data.decode()) == [
        "Extension 1001 is the only member of ring group 600 (Sales): add another member or"
        " delete the group first."]
    assert Extension.by_number("1001") is not None and members() == ["1001"]
    assert audit_rows("extension.delete") == []


# Viewers look; only admins change

@pytest.fixture
def viewer(client, auth, office):
    create_group("600", "Sales", ["1001", "1002"])
    auth.login_viewer()
    return client


@pytest.mark.parametrize("path", ["/groups/", "/groups/600"])
def test_a_viewer_sees_groups_without_buttons(viewer, path):
    response = viewer.get(path)
    assert response.status_code == 200
    page = response.data.decode()
    assert "Sales" in page
    for action in ("/groups/new", "/edit", "/delete"):
        assert f'{action}"' not in page


@pytest.mark.parametrize("path", ["/groups/new", "/groups/600/edit", "/groups/600/delete"])
def test_a_viewer_cannot_change_a_group(viewer, path):
    assert viewer.get(path).status_code == 403
    response = viewer.post(path, data=group_form(number="601", name="Mallory",
                                                 members=[("1", "1003")]))
    assert response.status_code == 403
    assert [(g.number, g.name) for g in RingGroup.select()] == [("600", "Sales")]
    assert members() == ["1001", "1002"]
    assert AuditEntry.select().where(AuditEntry.action.startswith("group.")).count() == 0


# CSRF

def test_changes_need_the_csrf_token(tmp_path):
    from panel_testing import Rows

    app = make_app(tmp_path, WTF_CSRF_ENABLED=True)
    client = app.test_client()
    token = csrf_token(client.get("/login").data.decode())
    client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": token})
    Rows().extension("1001")
    response = client.post("/groups/new", data=group_form(members=[("1", "1001")]))
    assert response.status_code == 400 and RingGroup.select().count() == 0
    assert "The CSRF token is missing." in response.data.decode()
    token = csrf_token(client.get("/groups/new").data.decode())
    response = client.post("/groups/new", data=group_form(members=[("1", "1001")],
                                                          csrf_token=token))
    assert response.status_code == 302 and members() == ["1001"]

    assert client.post("/groups/600/delete").status_code == 400
    assert RingGroup.by_number("600") is not None
    token = csrf_token(client.get("/groups/600/delete").data.decode())
    assert client.post("/groups/600/delete", data={"csrf_token": token}).status_code == 302
    assert RingGroup.by_number("600") is None
    db.close()

"""An extension's forwarding and DND in the panel (issue 11 items 4 and 8): shown on its
page and compactly in the list, changed with a form (each forward a destination or
off) and a DND switch, each change audited; what core/forwarding.py refuses is said
at its field and nothing is changed; viewers only look; CSRF.
"""

from __future__ import annotations

import re
from html import unescape

import pytest
from panel_testing import ADMIN, csrf_token, make_app

from core.forwarding import set_dnd, set_forward
from core.groups import create_group
from core.models import AuditEntry, Extension, db
from tools import catalogues


def audit_rows(action):
    return [(e.actor, e.target, e.detail)
            for e in AuditEntry.select().where(AuditEntry.action == action).order_by(AuditEntry.id)]


def forwarding(extension):
    extension = Extension.by_number(extension)
    return (extension.dnd, extension.forward_always, extension.forward_busy,
            extension.forward_no_answer, extension.forward_no_answer_after,
            extension.forward_unavailable)


def form(always="", busy="", no_answer="", after="20", unavailable="", dnd=False):
    data = {"always": always, "busy": busy, "no_answer": no_answer, "no_answer_after": after,
            "unavailable": unavailable}
    if dnd:
        data["dnd"] = "y"
    return data


def fact(page: str, name: str) -> str:
    """The text of the extension page's <dd id=name>."""
    cell = page[page.index(f'id="{name}"'):]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", cell[cell.index(">") + 1:
                                                          cell.index("</dd>")])).strip()


def field_errors(page: str, name: str) -> list[str]:
    start = page.index(f'name="{name}"')
    block = page[start:page.index("</div>", start)]
    return [unescape(m) for m in re.findall(r'<p class="error">([^<]*)</p>', block)]


@pytest.fixture
def office(rows):
    rows.extension("1001", name="Alice")
    rows.extension("1002", name="Bob")
    rows.extension("1003", name="Carol")
    create_group("600", "Sales", ["1002", "1003"])


# Shown

def test_the_extension_page_says_all_off_by_default(admin_client, office):
    page = admin_client.get("/extensions/1001").data.decode()
    for name in ("dnd", "forward-always", "forward-busy", "forward-no-answer",
                 "forward-unavailable"):
        assert fact(page, name) == "off", name
    assert fact(page, "memberships") == "none"
    assert 'href="/extensions/1001/forwarding"' in page
    assert 'action="/extensions/1001/dnd-on"' in page
    assert "DND" not in page[:page.index('id="forwarding"')]


def test_the_extension_page_shows_each_forward_with_names(admin_client, office):
    set_forward("1001", "always", "600")
    set_forward("1001", "busy", "1002")
    set_forward("1001", "no_answer", "1003", after=25)
    set_forward("1001", "unavailable", "hangup")
    set_dnd("1001", True)
    page = admin_client.get("/extensions/1001").data.decode()
    assert fact(page, "dnd") == "on callers get busy, or the busy forward"
    assert fact(page, "forward-always") == "600 Sales"
    assert fact(page, "forward-busy") == "1002 Bob"
    assert fact(page, "forward-no-answer") == "1003 Carol after 25 s"
    assert fact(page, "forward-unavailable") == "hang up"
    assert 'action="/extensions/1001/dnd-off"' in page
    # The groups it is in, on the page of a member.
    member = admin_client.get("/extensions/1002").data.decode()
    assert fact(member, "memberships") == "600 Sales"
    assert 'href="/groups/600"' in member[member.index('id="memberships"'):]


def test_the_list_shows_dnd_and_active_forwards_compactly(admin_client, office):
    set_forward("1001", "busy", "1002")
    set_forward("1001", "no_answer", "600", after=15)
    set_dnd("1002", True)
    page = admin_client.get("/extensions/").data.decode()
    row_1001 = page[page.index('id="ext-1001"'):page.index('id="ext-1002"')]
    assert 'data-forward="busy"' in row_1001 and "busy → 1002" in row_1001
    assert 'data-forward="no_answer"' in row_1001 and "no answer 15 s → 600" in row_1001
    assert 'data-forward="always"' not in row_1001 and 'data-dnd="on"' not in row_1001
    row_1002 = page[page.index('id="ext-1002"'):page.index('id="ext-1003"')]
    assert 'data-dnd="on"' in row_1002 and ">DND<" in row_1002
    assert "data-forward" not in row_1002
    row_1003 = page[page.index('id="ext-1003"'):]
    assert "data-forward" not in row_1003 and 'data-dnd="on"' not in row_1003


# Changed

def test_the_form_shows_the_current_settings(admin_client, office):
    set_forward("1001", "busy", "1002")
    set_forward("1001", "no_answer", "600", after=35)
    page = admin_client.get("/extensions/1001/forwarding").data.decode()
    assert re.search(r'name="busy"[^>]*value="1002"', page)
    assert re.search(r'name="no_answer"[^>]*value="600"', page)
    assert re.search(r'name="no_answer_after"[^>]*value="35"', page)
    assert re.search(r'name="always"[^>]*value=""', page)


def test_saving_sets_each_forward_and_is_audited(admin_client, office):
    response = admin_client.post("/extensions/1001/forwarding", data=form(
        busy="1002", no_answer="600", after="25", unavailable="hangup"))
    assert response.status_code == 302 and response.location == "/extensions/1001"
    assert forwarding("1001") == (False, "", "1002", "600", 25, "hangup")
    assert audit_rows("extension.forward") == [(
        ADMIN[0], "1001",
        "busy off -> 1002, no answer off -> 600 after 25 s, unavailable off -> hangup")]
    assert audit_rows("extension.dnd") == []
    assert "Forwarding of 1001 saved." in admin_client.get("/extensions/1001").data.decode()


def test_saving_changes_only_what_changed_and_turns_forwards_off(admin_client, office):
    set_forward("1001", "always", "1002")
    set_forward("1001", "no_answer", "600", after=20)
    admin_client.post("/extensions/1001/forwarding", data=form(no_answer="600", after="30"))
    assert forwarding("1001") == (False, "", "", "600", 30, "")
    assert audit_rows("extension.forward") == [(
        ADMIN[0], "1001", "always 1002 -> off, no answer 600 after 20 s -> 600 after 30 s")]
    # Saved again unchanged: nothing to record.
    admin_client.post("/extensions/1001/forwarding", data=form(no_answer="600", after="30"))
    assert len(audit_rows("extension.forward")) == 1


def test_dnd_in_the_form(admin_client, office):
    admin_client.post("/extensions/1001/forwarding", data=form(dnd=True))
    assert forwarding("1001")[0] is True
    assert audit_rows("extension.dnd") == [(ADMIN[0], "1001", "on")]
    assert audit_rows("extension.forward") == []
    admin_client.post("/extensions/1001/forwarding", data=form())
    assert forwarding("1001")[0] is False
    assert audit_rows("extension.dnd")[-1] == (ADMIN[0], "1001", "off")


def test_a_refused_destination_is_said_at_its_field_and_nothing_changes(admin_client, office):
    set_forward("1001", "busy", "1002")
    response = admin_client.post("/extensions/1001/forwarding", data=form(
        always="1999", busy="1003", dnd=True))
    assert response.status_code == 200
    page = response.data.decode()
    assert field_errors(page, "always") == ["1999 is no extension or ring group, and no outbound route takes it."]
    assert field_errors(page, "busy") == []
    # All or nothing: busy and DND, which were fine, are not changed either.
    assert forwarding("1001") == (False, "", "1002", "", 20, "")
    assert audit_rows("extension.forward") == [] and audit_rows("extension.dnd") == []
    assert re.search(r'name="always"[^>]*value="1999"', page)


def test_a_forward_to_itself_is_refused(admin_client, office):
    response = admin_client.post("/extensions/1001/forwarding", data=form(busy="1001"))
    assert field_errors(response.data.decode(), "busy") == ["1001 cannot forward to itself."]
    assert forwarding("1001")[2] == ""


@pytest.mark.parametrize(("fields", "name", "message"), [
    ({"after": ""}, "no_answer_after", "This field is required."),
    ({"after": "soon"}, "no_answer_after", "Not a valid integer value."),
    ({"after": "3", "no_answer": "1002"}, "no_answer_after",
     "No-answer time must be 5 to 120 seconds, got '3'."),
])
def test_form_errors_are_shown_at_their_field(admin_client, office, fields, name, message):
    response = admin_client.post("/extensions/1001/forwarding", data=form(**fields))
    assert response.status_code == 200
    assert message in field_errors(response.data.decode(), name)
    assert forwarding("1001") == (False, "", "", "", 20, "")


def test_refusals_are_translated(admin_client, office):
    admin_client.post("/account/language", data={"language": "ru"})
    response = admin_client.post("/extensions/1001/forwarding", data=form(always="1999"))
    russian = catalogues.load("ru")["%(number)s is no extension or ring group, and no outbound route takes it"].string
    russian %= {"number": "1999"}
    assert field_errors(response.data.decode(), "always") == [
        russian[:1].upper() + russian[1:] + "."]


def test_the_dnd_switch_on_the_page(admin_client, office):
    response = admin_client.post("/extensions/1001/dnd-on")
    assert response.status_code == 302 and response.location == "/extensions/1001"
    assert forwarding("1001")[0] is True
    page = admin_client.get("/extensions/1001").data.decode()
    assert "Do not disturb is on for 1001" in page
    assert 'data-dnd="on"' in page  # beside the status, as in the list
    admin_client.post("/extensions/1001/dnd-off")
    assert forwarding("1001")[0] is False
    # Pressed again when already off (a second tab): nothing to record.
    admin_client.post("/extensions/1001/dnd-off")
    assert audit_rows("extension.dnd") == [(ADMIN[0], "1001", "on"), (ADMIN[0], "1001", "off")]
    assert "changed do-not-disturb of extension" in admin_client.get(
        "/security/audit").data.decode()


def test_an_unknown_extension_is_a_404(admin_client):
    assert admin_client.get("/extensions/1999/forwarding").status_code == 404
    assert admin_client.post("/extensions/1999/dnd-on").status_code == 404


# Viewers look; only admins change

def test_a_viewer_sees_forwarding_without_buttons(client, auth, office):
    set_forward("1001", "busy", "1002")
    auth.login_viewer()
    page = client.get("/extensions/1001").data.decode()
    assert fact(page, "forward-busy") == "1002 Bob"
    assert "/forwarding" not in page and "dnd-on" not in page
    assert client.get("/extensions/1001/forwarding").status_code == 403


@pytest.mark.parametrize("path", ["/extensions/1001/forwarding", "/extensions/1001/dnd-on"])
def test_a_viewer_cannot_change_forwarding(client, auth, office, path):
    auth.login_viewer()
    assert client.post(path, data=form(always="1002", dnd=True)).status_code == 403
    assert forwarding("1001") == (False, "", "", "", 20, "")
    assert AuditEntry.select().where(AuditEntry.action.startswith("extension.")).count() == 0


# CSRF

def test_changes_need_the_csrf_token(tmp_path):
    from panel_testing import Rows

    app = make_app(tmp_path, WTF_CSRF_ENABLED=True)
    client = app.test_client()
    token = csrf_token(client.get("/login").data.decode())
    client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": token})
    Rows().extension("1001")
    Rows().extension("1002")
    assert client.post("/extensions/1001/forwarding", data=form(busy="1002")).status_code == 400
    assert client.post("/extensions/1001/dnd-on").status_code == 400
    assert forwarding("1001") == (False, "", "", "", 20, "")
    token = csrf_token(client.get("/extensions/1001/forwarding").data.decode())
    response = client.post("/extensions/1001/forwarding",
                           data={**form(busy="1002"), "csrf_token": token})
    assert response.status_code == 302 and forwarding("1001")[2] == "1002"
    token = csrf_token(client.get("/extensions/1001").data.decode())
    assert client.post("/extensions/1001/dnd-on", data={"csrf_token": token}).status_code == 302
    assert forwarding("1001")[0] is True
    db.close()

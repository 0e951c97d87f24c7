"""Panel users managed in the panel: list, add (admin or viewer), change role, disable and
enable, audited; viewers cannot reach it; the last enabled admin stays one (issue 15 item 4).

A real temporary database per test (conftest.py); a second test client is a
second browser, to show that disabling a user ends the sessions they have.
"""

from __future__ import annotations

import re

import pytest
from panel_testing import VIEWER, Rows, shown_password

from core.accounts import LastAdminError, _update_keeping_an_admin, set_admin_enabled
from core.models import Admin, AuditEntry

LAST_ADMIN = ("The panel needs an enabled admin and admin is the last one:"
              " add or enable another admin first.")


def login(client, username, password):
    return client.post("/login", data={"username": username, "password": password})


def audit_rows(action):
    return [(e.actor, e.target, e.detail)
            for e in AuditEntry.select().where(AuditEntry.action == action).order_by(AuditEntry.id)]


def add(client, username="carol", role="viewer", mode="generate", password="", confirm=None):
    return client.post("/admins/new", data={
        "username": username, "role": role, "mode": mode, "password": password,
        "confirm": password if confirm is None else confirm,
    })


def second_admin(app, username="bob", password="tram-lemon-quiet-4"):
    Rows().admin(username, password)
    browser = app.test_client()
    assert login(browser, username, password).status_code == 302
    return browser


# Who may reach it

# A viewer's POSTs are refused by the panel-wide rule (app/__init__.py); these
# pages are not even shown to them.
@pytest.mark.parametrize("path", ["/admins/", "/admins/new"])
def test_a_viewer_cannot_reach_it(client, auth, path):
    auth.login_viewer()
    response = client.get(path)
    assert response.status_code == 403
    assert "Managing panel users is for admins." in response.data.decode()


def test_a_visitor_is_sent_to_log_in(client):
    response = client.get("/admins/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_the_menu_links_it_for_admins_only(client, auth):
    auth.login()
    assert 'href="/admins/"' in client.get("/extensions/").data.decode()
    auth.logout()
    auth.login_viewer()
    assert 'href="/admins/"' not in client.get("/extensions/").data.decode()


# The list

def test_the_list_shows_every_user_with_role_and_status(admin_client):
    set_admin_enabled("viewer", False)
    page = admin_client.get("/admins/").data.decode()
    admin_row = re.search(r'<tr id="admin-admin" data-role="admin" data-status="enabled">', page)
    viewer_row = re.search(r'<tr id="admin-viewer" data-role="viewer" data-status="disabled">', page)
    assert admin_row and viewer_row
    assert '<span class="tag">you</span>' in page


# Adding

def test_adding_a_viewer_shows_a_generated_password_once(app, admin_client):
    response = add(admin_client, "carol", "viewer")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    password = shown_password(response.data.decode())
    assert len(password) == 20
    carol = Admin.by_username("carol")
    assert carol.role == "viewer" and carol.enabled
    assert audit_rows("admin.create") == [("admin", "carol", "role viewer, generated password")]
    assert password not in admin_client.get("/admins/").data.decode()
    # The new user logs in with it, and is a viewer.
    browser = app.test_client()
    assert login(browser, "carol", password).status_code == 302
    assert browser.get("/admins/").status_code == 403


def test_adding_an_admin_with_a_typed_password(app, admin_client):
    response = add(admin_client, "dave", "admin", mode="generate", password="tram-lemon-quiet-4")
    assert shown_password(response.data.decode()) == "tram-lemon-quiet-4"
    assert Admin.by_username("dave").role == "admin"
    assert audit_rows("admin.create") == [("admin", "dave", "role admin, password set")]
    browser = app.test_client()
    assert login(browser, "dave", "tram-lemon-quiet-4").status_code == 302
    assert browser.get("/admins/").status_code == 200


@pytest.mark.parametrize(("fields", "message"), [
    ({"password": "password123"},
     "Password is one of the most common passwords (or one with digits or symbols added)."),
    ({"password": "carol-carol-7x"}, "Password must not contain the user name (carol)."),
    ({"password": " " * 12}, "Password must not be blank."),
    ({"password": "tram-lemon-quiet-4", "confirm": "tram-lemon-quiet-5"},
     "The two passwords differ."),
    ({"username": "Viewer"}, "There is a user viewer already (user names are not case-sensitive)."),
    ({"username": "no spaces"}, "The user name must be 1 to 64 letters, digits or _ . @ -."),
    ({"role": "root"}, "Not a valid choice."),
])
def test_adding_refuses_with_the_reason(admin_client, fields, message):
    data = {"username": "carol", "role": "viewer", "mode": "set", **fields}
    data.setdefault("confirm", data.get("password", ""))
    response = admin_client.post("/admins/new", data=data)
    assert response.status_code == 200
    assert message in response.data.decode()
    assert Admin.select().count() == 2
    assert audit_rows("admin.create") == []


# Roles

def test_changing_a_role_takes_effect_at_once(app, admin_client, client):
    browser = app.test_client()
    login(browser, *VIEWER)
    assert browser.get("/admins/").status_code == 403
    response = admin_client.post("/admins/viewer/role", data={"role": "admin"},
                                 follow_redirects=True)
    assert "viewer is now admin." in response.data.decode()
    assert Admin.by_username("viewer").role == "admin"
    assert audit_rows("admin.role") == [("admin", "viewer", "viewer -> admin")]
    # The same session, now an admin's.
    assert browser.get("/admins/").status_code == 200


def test_the_last_admin_cannot_make_themself_a_viewer(admin_client):
    response = admin_client.post("/admins/admin/role", data={"role": "viewer"},
                                 follow_redirects=True)
    assert LAST_ADMIN in response.data.decode()
    assert Admin.by_username("admin").role == "admin"
    assert audit_rows("admin.role") == []


def test_an_admin_may_step_down_while_another_admin_remains(app, admin_client):
    second_admin(app)
    admin_client.post("/admins/admin/role", data={"role": "viewer"})
    assert Admin.by_username("admin").role == "viewer"
    assert admin_client.get("/admins/").status_code == 403


def test_a_disabled_admin_does_not_count_as_the_one_left(app, admin_client):
    Rows().admin("bob", "tram-lemon-quiet-4")
    set_admin_enabled("bob", False)
    for path, data in (("/admins/admin/role", {"role": "viewer"}), ("/admins/admin/disable", {})):
        response = admin_client.post(path, data=data, follow_redirects=True)
        assert LAST_ADMIN in response.data.decode()
    admin = Admin.by_username("admin")
    assert admin.role == "admin" and admin.enabled


# Disabling and enabling

def test_disabling_a_user_ends_their_sessions(app, admin_client):
    browser = second_admin(app)
    assert browser.get("/extensions/").status_code == 200
    response = admin_client.post("/admins/bob/disable", follow_redirects=True)
    assert "bob is disabled; every session of theirs has ended." in response.data.decode()
    assert audit_rows("admin.disable") == [("admin", "bob", "")]
    ended = browser.get("/extensions/")
    assert ended.status_code == 302 and ended.headers["Location"].startswith("/login")
    assert login(app.test_client(), "bob", "tram-lemon-quiet-4").status_code == 200  # refused

    admin_client.post("/admins/bob/enable")
    assert audit_rows("admin.enable") == [("admin", "bob", "")]
    assert login(app.test_client(), "bob", "tram-lemon-quiet-4").status_code == 302


def test_the_last_admin_cannot_disable_themself(admin_client):
    response = admin_client.post("/admins/admin/disable", follow_redirects=True)
    assert LAST_ADMIN in response.data.decode()
    assert Admin.by_username("admin").enabled
    assert admin_client.get("/admins/").status_code == 200
    assert audit_rows("admin.disable") == []


def test_an_admin_may_disable_themself_while_another_admin_remains(app, admin_client):
    second_admin(app)
    admin_client.post("/admins/admin/disable")
    assert not Admin.by_username("admin").enabled
    response = admin_client.get("/admins/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_a_viewer_may_always_be_disabled(admin_client):
    admin_client.post("/admins/viewer/disable")
    assert not Admin.by_username("viewer").enabled


def test_an_unknown_user_is_404(admin_client):
    for response in (admin_client.post("/admins/nobody/disable"),
                     admin_client.post("/admins/nobody/role", data={"role": "admin"})):
        assert response.status_code == 404
        assert "There is no panel user nobody." in response.data.decode()


def test_the_guard_is_made_by_the_write_not_by_an_earlier_read(app):
    # Two admins disabling each other at once: both requests read "another
    # admin remains" before either wrote. The check is in the UPDATE itself,
    # so the second write finds nobody left and is refused.
    Rows().admin("bob", "tram-lemon-quiet-4")
    admin_seen, bob_seen = Admin.by_username("admin"), Admin.by_username("bob")
    _update_keeping_an_admin(bob_seen, True, ending_sessions=True, enabled=False)
    with pytest.raises(LastAdminError):
        _update_keeping_an_admin(admin_seen, True, ending_sessions=True, enabled=False)
    assert Admin.by_username("admin").enabled
    assert not Admin.by_username("bob").enabled

"""Login, logout, the next parameter, CSRF, cookies, headers and the viewer role."""

import pytest
from panel_testing import ADMIN, REALM, SECRET, csrf_token, make_app

from core.accounts import create_extension
from core.models import Admin, Extension, db

PROTECTED_PAGES = [
    "/",
    "/extensions/",
    "/extensions/new",
    "/extensions/1002",
    "/extensions/1002/edit",
    "/extensions/1002/password",
    "/extensions/1002/delete",
    "/registrations/",
    "/security/failures",
    "/security/audit",
    "/security/bans",
    "/calls/",
    "/calls/active",
    "/calls/export.csv",
    "/settings/",
]


def test_login_page(client):
    response = client.get("/login")
    assert response.status_code == 200
    assert b'name="username"' in response.data
    assert b'type="password"' in response.data


def test_root_is_the_dashboard(admin_client):
    response = admin_client.get("/")
    assert response.status_code == 200
    assert b"<h1>Dashboard</h1>" in response.data


def test_index_redirects_to_login_with_next(client):
    response = client.get("/extensions/")
    assert response.status_code == 302
    assert response.location.startswith("/login?next=")


@pytest.mark.parametrize("path", PROTECTED_PAGES)
def test_every_page_needs_a_login(client, rows, path):
    rows.extension("1002")
    response = client.get(path)
    assert response.status_code == 302
    assert response.location.startswith("/login")


@pytest.mark.parametrize("path", [
    "/logout", "/extensions/new", "/extensions/1002/edit", "/extensions/1002/disable",
    "/extensions/1002/enable", "/extensions/1002/password", "/extensions/1002/delete",
    "/calls/1/hangup", "/security/bans/lift",
])
def test_every_post_needs_a_login(client, rows, path):
    rows.extension("1002")
    rows.call(live=True)
    response = client.post(path, data={"name": "x", "enabled": "y", "mode": "generate"})
    assert response.status_code == 302
    assert response.location.startswith("/login")
    assert Extension.by_number("1002").enabled  # nothing happened


def test_login_good(client, auth):
    response = auth.login()
    assert response.status_code == 302
    assert response.location == "/"
    assert client.get("/extensions/").status_code == 200
    admin = Admin.get(Admin.username == ADMIN[0])
    assert admin.last_login_at is not None


@pytest.mark.parametrize(("username", "password"), [
    (ADMIN[0], "wrong-password-1"),
    ("nobody", ADMIN[1]),
    (ADMIN[0], ""),
])
def test_login_bad(client, auth, username, password):
    response = auth.login(username, password)
    assert response.status_code == 200
    assert client.get("/extensions/").status_code == 302
    if password:
        assert b"Wrong user name or password." in response.data
    else:
        assert b"This field is required." in response.data


def test_login_keeps_a_safe_next(client, auth):
    response = client.get("/login?next=/registrations/")
    assert b'value="/registrations/"' in response.data
    response = auth.login(next_url="/registrations/?x=1")
    assert response.location == "/registrations/?x=1"


@pytest.mark.parametrize("target", [
    "https://evil.example/",
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "\\\\evil.example/",
    "/\t/evil.example/",
    "javascript:alert(1)",
    "http:/evil.example",
    "evil.example",
])
def test_login_refuses_an_open_redirect(client, auth, target):
    page = client.get("/login", query_string={"next": target})
    assert b"evil.example" not in page.data
    response = auth.login(next_url=target)
    assert response.status_code == 302
    assert response.location == "/"


def test_logged_in_user_visiting_login_goes_on(admin_client):
    response = admin_client.get("/login?next=//evil.example/")
    assert response.location == "/"


def test_logout_is_a_post(admin_client, auth):
    assert admin_client.get("/logout").status_code == 405
    assert admin_client.get("/extensions/").status_code == 200
    response = auth.logout()
    assert response.status_code == 302
    assert response.location == "/login"
    assert admin_client.get("/extensions/").status_code == 302


def test_session_cookie_flags(client, auth):
    response = auth.login()
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_security_headers(client):
    response = client.get("/login")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_stylesheet_is_served_locally(client):
    page = client.get("/login").data.decode()
    assert "/static/panel.css" in page
    assert "http://" not in page and "https://" not in page
    assert client.get("/static/panel.css").status_code == 200


# CSRF: an app with protection on, as in production.

@pytest.fixture
def csrf_client(tmp_path):
    app = make_app(tmp_path, WTF_CSRF_ENABLED=True)
    yield app.test_client()
    if not db.is_closed():
        db.close()


def token_from(client, path):
    return csrf_token(client.get(path).data.decode())


def test_login_without_csrf_token_is_refused(csrf_client):
    response = csrf_client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]})
    assert response.status_code == 400
    assert b"CSRF token is missing" in response.data
    assert csrf_client.get("/extensions/").status_code == 302


def test_login_with_csrf_token_works(csrf_client):
    token = token_from(csrf_client, "/login")
    response = csrf_client.post(
        "/login", data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": token}
    )
    assert response.status_code == 302
    assert csrf_client.get("/extensions/").status_code == 200


@pytest.mark.parametrize("path", ["/extensions/new", "/extensions/1002/disable", "/logout"])
def test_state_change_without_csrf_token_is_refused(csrf_client, path):
    create_extension("1002", REALM, password="correct-horse-1")
    token = token_from(csrf_client, "/login")
    csrf_client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1],
                                     "csrf_token": token})
    response = csrf_client.post(path, data={"number": "1003", "mode": "generate"})
    assert response.status_code == 400
    assert Extension.by_number("1003") is None
    assert Extension.by_number("1002").enabled
    assert csrf_client.get("/extensions/").status_code == 200  # still logged in

    # The same request with the session's token goes through.
    token = token_from(csrf_client, "/extensions/new")
    response = csrf_client.post(
        path, data={"number": "1003", "mode": "generate", "csrf_token": token}
    )
    assert response.status_code in (200, 302)


def test_secret_key_comes_from_settings_or_database(tmp_path):
    # No SECRET_KEY in the config: the one generated into the database, stable.
    app = make_app(tmp_path, SECRET_KEY=None)
    first = app.config["SECRET_KEY"]
    assert first and first != SECRET and len(first) >= 32
    again = make_app(tmp_path / "again", SECRET_KEY=None)
    assert again.config["SECRET_KEY"] != first  # another database, another key
    db.close()


def test_refuses_to_start_on_a_server_without_a_secret(tmp_path):
    import dataclasses

    from app import create_app
    from core.config import ConfigError, load_settings

    settings = dataclasses.replace(
        load_settings({"PBX_DB": str(tmp_path / "pbx.db")}), server=True
    )
    with pytest.raises(ConfigError, match="PBX_SECRET_KEY"):
        create_app(settings=settings)
    if not db.is_closed():
        db.close()


def test_error_pages_are_html(admin_client):
    response = admin_client.get("/extensions/9999")
    assert response.status_code == 404
    assert b"There is no extension 9999." in response.data

"""Panel hardening (issue 5): login throttling with backoff, the audit log, session
expiry, cookies and headers on a server, the secret key, and the viewer role on
every POST route."""

import dataclasses
import time

import pytest
from panel_testing import ADMIN, REALM, SECRET, VIEWER, Rows, make_app

from app import create_app
from app.auth import throttle
from core.config import ConfigError, load_settings
from core.models import AuditEntry, Extension, LoginThrottle, db

TOO_MANY = "Too many failed logins, try again in {} s."


@pytest.fixture(autouse=True)
def cheap_dummy_hash(monkeypatch):
    """Unknown users are checked against a dummy hash (same time as a real one): a cheap one here."""
    from werkzeug.security import generate_password_hash

    from core import accounts

    monkeypatch.setattr(accounts, "_DUMMY_HASH",
                        generate_password_hash("x", method="pbkdf2:sha256:1000"))


@pytest.fixture
def clock(monkeypatch):
    """The throttle's clock, moved by hand."""
    now = [1_800_000_000.0]
    monkeypatch.setattr(throttle, "clock", lambda: now[0])
    return now


def login(client, username=ADMIN[0], password=ADMIN[1], address="198.51.100.7"):
    return client.post("/login", data={"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def fail(client, times, username=ADMIN[0], address="198.51.100.7"):
    for _ in range(times):
        response = login(client, username, "wrong-password-9", address)
        assert response.status_code == 200
    return response


# Throttling

@pytest.mark.parametrize(("failures", "seconds"), [
    (0, 0), (1, 0), (4, 0), (5, 30), (6, 60), (7, 120), (8, 240), (9, 480), (10, 900),
    (11, 900), (1000, 900),
])
def test_backoff(failures, seconds):
    assert throttle.backoff(failures) == seconds


def test_five_failures_lock_the_user_even_with_the_right_password(client, clock):
    response = fail(client, 4)
    assert b"Too many" not in response.data
    response = fail(client, 1)  # the fifth: locked now, and told so
    assert TOO_MANY.format(30).encode() in response.data
    clock[0] += 10
    response = login(client)  # the right password, refused unseen
    assert response.status_code == 429
    assert TOO_MANY.format(20).encode() in response.data
    assert client.get("/extensions/").status_code == 302
    # A refusal while locked does not count: still 5 failures, still 30 s from the fifth.
    assert LoginThrottle.get_by_id("addr:198.51.100.7").failures == 5
    clock[0] += 21
    assert login(client).status_code == 302
    assert client.get("/extensions/").status_code == 200
    # A success clears the counters.
    assert LoginThrottle.select().count() == 0


def test_backoff_doubles_then_caps(client, clock):
    fail(client, 5)
    for expected in (60, 120, 240, 480, 900, 900):
        clock[0] += throttle.MAX_LOCK + 1  # just past any lock, well within the hour
        response = fail(client, 1)
        assert TOO_MANY.format(expected).encode() in response.data
        clock[0] += expected - 1
        response = login(client)
        assert response.status_code == 429
        assert TOO_MANY.format(1).encode() in response.data


def test_failures_are_forgotten_after_an_hour_of_quiet(client, clock):
    fail(client, 4)
    clock[0] += throttle.FORGET_AFTER + 1
    response = fail(client, 1)
    assert b"Too many" not in response.data
    assert LoginThrottle.get_by_id("addr:198.51.100.7").failures == 1


def test_per_user_from_many_addresses(client, clock):
    # Only from many sources: from one, or a few, it is their lock (tests/web/test_probe_panel.py).
    for number in range(throttle.USER_SOURCES):
        fail(client, 1, address=f"203.0.113.{number + 1}")
    # admin is locked wherever the next try comes from...
    response = login(client, address="192.0.2.99")
    assert response.status_code == 429
    # ...and in any case spelling; another user from that address is not.
    assert login(client, "ADMIN", ADMIN[1], address="192.0.2.99").status_code == 429
    assert login(client, *VIEWER, address="192.0.2.99").status_code == 302


def test_per_address_across_user_names(client, clock):
    for name in ("root", "admin1", "administrator", "support", "pbx"):
        fail(client, 1, username=name, address="203.0.113.66")
    response = login(client, address="203.0.113.66")
    assert response.status_code == 429
    assert TOO_MANY.format(30).encode() in response.data
    assert login(client, address="198.51.100.7").status_code == 302


def test_counters_are_shared_by_every_worker(tmp_path, clock):
    """Two apps on one database, as two gevent workers would be: one sees the other's failures."""
    first = make_app(tmp_path)
    second = create_app({"TESTING": True, "DB_PATH": str(tmp_path / "pbx.db"), "REALM": REALM,
                         "SECRET_KEY": SECRET, "WTF_CSRF_ENABLED": False})
    fail(first.test_client(), 3)
    fail(second.test_client(), 2)
    assert login(first.test_client()).status_code == 429
    assert login(second.test_client()).status_code == 429
    db.close()


def test_unknown_users_are_throttled_like_known_ones(client, clock):
    response = fail(client, 5, username="nobody")
    assert TOO_MANY.format(30).encode() in response.data
    assert login(client, "nobody", "whatever-1").status_code == 429


# The audit log

def entries():
    return [(e.actor, e.action, e.target, e.source, e.detail)
            for e in AuditEntry.select().order_by(AuditEntry.id)]


def test_logins_and_logouts_are_audited(client, clock):
    login(client, ADMIN[0], "wrong-password-9", address="203.0.113.5")
    login(client, address="198.51.100.7")
    client.post("/logout", environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert entries() == [
        ("", "login_failed", "admin", "203.0.113.5", ""),
        ("admin", "login", "admin", "198.51.100.7", ""),
        ("admin", "logout", "admin", "198.51.100.7", ""),
    ]


def test_the_failure_that_locks_says_so(client, clock):
    fail(client, 5, username="root", address="203.0.113.5")
    assert entries()[-1] == ("", "login_failed", "root", "203.0.113.5", "locked for 30 s")
    login(client, "root", "again-and-again", address="203.0.113.5")  # refused unseen
    assert len(entries()) == 5  # a refusal while locked writes nothing


def test_every_extension_change_is_audited(admin_client):
    AuditEntry.delete().execute()
    where = {"environ_base": {"REMOTE_ADDR": "192.0.2.44"}}
    admin_client.post("/extensions/new", data={"number": "1002", "name": "Alice",
                                               "mode": "generate", "enabled": "y"}, **where)
    admin_client.post("/extensions/1002/edit", data={"name": "Alice B", "enabled": "y"}, **where)
    admin_client.post("/extensions/1002/disable", **where)
    admin_client.post("/extensions/1002/enable", **where)
    admin_client.post("/extensions/1002/edit", data={"name": "Alice B"}, **where)  # disables
    admin_client.post("/extensions/1002/password",
                      data={"mode": "set", "password": "a-good-one-42", "confirm": "a-good-one-42"},
                      **where)
    admin_client.post("/extensions/1002/delete", **where)
    assert entries() == [
        ("admin", "extension.create", "1002", "192.0.2.44", "name 'Alice', generated password"),
        ("admin", "extension.edit", "1002", "192.0.2.44", "name 'Alice' -> 'Alice B'"),
        ("admin", "extension.disable", "1002", "192.0.2.44", ""),
        ("admin", "extension.enable", "1002", "192.0.2.44", ""),
        ("admin", "extension.edit", "1002", "192.0.2.44", "disabled"),
        ("admin", "extension.password", "1002", "192.0.2.44", "password set"),
        ("admin", "extension.delete", "1002", "192.0.2.44", "name 'Alice B'"),
    ]
    assert Extension.select().count() == 0


def test_a_refused_change_writes_no_audit_row(admin_client, rows):
    rows.extension("1002")
    AuditEntry.delete().execute()
    response = admin_client.post("/extensions/new", data={"number": "1002", "mode": "generate"})
    assert b"already exists" in response.data
    admin_client.post("/extensions/1002/password", data={"mode": "set", "password": "1002",
                                                          "confirm": "1002"})
    assert entries() == []


def test_the_audit_page(admin_client, rows):
    from core import audit

    audit.record("cli:root", "extension.create", "1009", "ssh 192.0.2.7", "generated password")
    audit.record("", "login_failed", "<script>alert(1)</script>", "203.0.113.5",
                 "locked for 30 s")
    page = admin_client.get("/security/audit").data.decode()
    table = page[page.index('id="audit"'):]
    assert "cli:root" in table and "created extension" in table and "ssh 192.0.2.7" in table
    assert "not logged in" in table and "failed login" in table
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in table
    # Newest first; the login of admin_client is there too.
    what = '<td data-label="What">{} '
    assert (table.index(what.format("failed login")) < table.index(what.format("created extension"))
            < table.index(what.format("logged in")))


def test_the_audit_page_has_pages(admin_client):
    from core import audit

    now = time.time()
    with db.atomic():
        for number in range(120):
            audit.record("cli:root", "extension.create", f"{2000 + number}", "local", now=now + number)
    first = admin_client.get("/security/audit").data.decode()
    assert "1–50 of 121 entries · page 1 of 3" in first
    assert "2119" in first and "2069" not in first
    last = admin_client.get("/security/audit?page=3").data.decode()
    assert "101–121 of 121 entries" in last and "2000" in last and "logged in" in last


def test_a_viewer_may_read_the_audit_log(client, auth):
    auth.login_viewer()
    assert client.get("/security/audit").status_code == 200


# Session expiry

def test_an_idle_session_ends(admin_client):
    with admin_client.session_transaction() as session:
        session["seen_at"] = time.time() - 31 * 60
    response = admin_client.get("/calls/?extension=1002")
    assert response.status_code == 302
    assert response.location == "/login?next=/calls/?extension%3D1002"
    page = admin_client.get(response.location).data.decode()
    assert "You were logged out after a period of inactivity." in page
    assert admin_client.get("/extensions/").status_code == 302


def test_a_session_ends_after_its_lifetime_however_busy(admin_client):
    with admin_client.session_transaction() as session:
        session["login_at"] = time.time() - 8 * 3600 - 1
    response = admin_client.get("/extensions/")
    assert response.status_code == 302 and response.location.startswith("/login")
    assert b"Your session has expired." in admin_client.get("/login").data


def test_activity_keeps_a_session_alive(admin_client):
    with admin_client.session_transaction() as session:
        session["seen_at"] = time.time() - 29 * 60
    assert admin_client.get("/extensions/").status_code == 200
    with admin_client.session_transaction() as session:
        assert time.time() - session["seen_at"] < 5


def test_the_live_calls_poll_is_not_activity(admin_client):
    with admin_client.session_transaction() as session:
        session["seen_at"] = time.time() - 29 * 60
    assert admin_client.get("/calls/active.json").status_code == 200
    with admin_client.session_transaction() as session:
        assert time.time() - session["seen_at"] > 28 * 60
        session["seen_at"] = time.time() - 31 * 60
    response = admin_client.get("/calls/active.json")
    assert response.status_code == 401
    assert "inactivity" in response.get_json()["error"]


def test_a_post_on_an_expired_session_does_nothing(admin_client, rows):
    rows.extension("1002")
    with admin_client.session_transaction() as session:
        session["seen_at"] = time.time() - 3600
    response = admin_client.post("/extensions/1002/disable")
    assert response.status_code == 302 and response.location == "/login"
    assert Extension.by_number("1002").enabled


def test_a_session_without_times_is_not_trusted(admin_client):
    with admin_client.session_transaction() as session:
        del session["login_at"]
    assert admin_client.get("/extensions/").status_code == 302


def test_the_session_cookie_is_permanent_with_the_lifetime(client, auth):
    cookie = auth.login().headers["Set-Cookie"]
    assert "Expires=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http in a checkout


# On a server

@pytest.fixture
def server_app(tmp_path):
    settings = dataclasses.replace(
        load_settings({"PBX_DB": str(tmp_path / "pbx.db"), "PBX_REALM": REALM,
                       "PBX_SECRET_KEY": SECRET + "AbCdEfGhIjKlMnOp0123456789"}),
        server=True,
    )
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False}, settings=settings)
    with db.connection_context():
        Rows().admin(*ADMIN)
    yield app
    if not db.is_closed():
        db.close()


def test_on_a_server_the_cookie_is_secure_and_host_only(server_app):
    client = server_app.test_client()
    response = client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]},
                           base_url="https://pbx.example")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-pbx-session=")
    for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert flag in cookie
    assert "Domain=" not in cookie
    assert client.get("/extensions/", base_url="https://pbx.example").status_code == 200


def test_on_a_server_the_address_comes_from_nginx_only(server_app):
    client = server_app.test_client()
    forwarded = {"X-Forwarded-For": "10.9.9.9, 203.0.113.77"}  # nginx appends the real one
    login(client, ADMIN[0], "wrong-password-9", address="127.0.0.1")
    client.post("/login", data={"username": ADMIN[0], "password": "wrong-password-9"},
                headers=forwarded, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    client.post("/login", data={"username": ADMIN[0], "password": "wrong-password-9"},
                headers=forwarded, environ_base={"REMOTE_ADDR": "198.51.100.8"})
    assert [e[3] for e in entries()] == ["127.0.0.1", "203.0.113.77", "198.51.100.8"]


@pytest.mark.parametrize("key", [
    "k" * 40,
    "changeme" * 5,
    "0123456789" * 2,  # too short
])
def test_on_a_server_a_placeholder_secret_is_refused(tmp_path, key):
    settings = dataclasses.replace(load_settings({"PBX_DB": str(tmp_path / "pbx.db")}),
                                   server=True, secret_key=key)
    with pytest.raises(ConfigError, match="PBX_SECRET_KEY is not a real secret"):
        create_app(settings=settings)
    if not db.is_closed():
        db.close()


def test_on_a_server_no_secret_is_refused_at_load():
    with pytest.raises(ConfigError, match="PBX_SECRET_KEY must be set on a server"):
        load_settings({"PBX_SERVER": "1"})


def test_headers_on_every_page(admin_client):
    response = admin_client.get("/calls/")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "camera=()" in response.headers["Permissions-Policy"]
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "Cache-Control" not in admin_client.get("/static/panel.css").headers or (
        admin_client.get("/static/panel.css").headers["Cache-Control"] != "no-store")


# The viewer role, on every POST route there is

def post_routes(app):
    for rule in app.url_map.iter_rules():
        # A viewer may still log in and out, and set their own password (auth.account)
        # and language (auth.language).
        if "POST" in rule.methods and rule.endpoint not in {"auth.login", "auth.logout",
                                                            "auth.account", "auth.language"}:
            yield rule


def test_a_viewer_cannot_post_to_any_route(app, client, auth, rows):
    rows.extension("1002")
    call = rows.call(live=True)
    auth.login_viewer()
    routes = list(post_routes(app))
    assert {"calls.hangup", "extensions.create", "extensions.delete"} <= {r.endpoint for r in routes}
    values = {"number": "1002", "call_id": call.id, "ban_id": 1, "username": "admin",
              "name": "acme", "route_id": 1, "message_id": 1, "language": "en"}
    for rule in routes:
        path = rule.build({name: values[name] for name in rule.arguments})[1]
        assert client.post(path, data={"mode": "generate"}).status_code == 403, path
    assert Extension.by_number("1002").enabled
    assert AuditEntry.select().where(AuditEntry.actor == VIEWER[0],
                                     AuditEntry.action != "login").count() == 0


def test_the_settings_page_tells_the_session_limits(admin_client):
    page = admin_client.get("/settings/").data.decode()
    panel = page[page.index('id="panel-settings"'):]
    assert "after 30 min without a click" in panel and "8 h" in panel

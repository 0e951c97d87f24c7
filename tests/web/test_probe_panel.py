"""The panel's findings of the outside probe (issue 14: findings 7, 8 and the panel's part of 10).

The probe's way: a session cookie copied into a second client (what a stolen
cookie is), attackers at their own addresses, pbxctl run as the admin runs it
(./pbxctl in a subprocess, on the panel's database), hostile values in the
rows sipd writes. The panel is the real one on a real SQLite file, with CSRF
on as in production: what the copy POSTs carries a valid token.
"""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import subprocess
import sys
import time

import pytest
from panel_testing import ADMIN, REALM, ROOT, SECRET, VIEWER, csrf_token, make_app

from app.auth import throttle
from core import migrations
from core.config import load_settings
from core.database import connect
from core.models import Admin, AuditEntry, Extension, SchemaVersion, db

ATTACKER = "127.0.0.9"
OFFICE = "127.0.0.1"
NEW_PASSWORD = "a-new-password-7"


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path, WTF_CSRF_ENABLED=True)
    yield app
    if not db.is_closed():
        db.close()


@pytest.fixture
def cheap_dummy_hash(monkeypatch):
    from werkzeug.security import generate_password_hash

    from core import accounts

    monkeypatch.setattr(accounts, "_DUMMY_HASH",
                        generate_password_hash("x", method="pbkdf2:sha256:1000"))


@pytest.fixture
def clock(monkeypatch):
    now = [1_800_000_000.0]
    monkeypatch.setattr(throttle, "clock", lambda: now[0])
    return now


def pbxctl(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """./pbxctl as an admin runs it, on the panel's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBX_")}
    env.update(PBX_DB=str(tmp_path / "pbx.db"), PBX_REALM=REALM, PBX_PYTHON=sys.executable)
    return subprocess.run([str(ROOT / "pbxctl"), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def log_in(client, username=ADMIN[0], password=ADMIN[1], address=OFFICE):
    token = csrf_token(client.get("/login", environ_base={"REMOTE_ADDR": address}).data.decode())
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": token},
                       environ_base={"REMOTE_ADDR": address})


def copy_of(app, client):
    """A second browser holding a copy of `client`'s session cookie (`copy.stolen`)."""
    copy = app.test_client()
    copy.stolen = client.get_cookie("session").value
    copy.set_cookie("session", copy.stolen)
    return copy


def token_of(client, path="/extensions/new") -> str:
    return csrf_token(client.get(path).data.decode())


def logged_in_with_a_copy(app):
    """(the admin's browser, the thief's copy of its cookie, a CSRF token the copy read)."""
    browser = app.test_client()
    assert log_in(browser).status_code == 302
    assert browser.get("/extensions/").status_code == 200  # the cookie now holds a CSRF secret
    thief = copy_of(app, browser)
    assert thief.get("/extensions/").status_code == 200  # the copy works, to begin with
    return browser, thief, token_of(thief)


def assert_refused(thief, token):
    """The copy is logged out, and its POST (with a valid CSRF token) changes nothing.

    The thief sends the copied cookie every time, whatever the panel set instead.
    """
    thief.set_cookie("session", thief.stolen)
    response = thief.get("/extensions/")
    assert response.status_code == 302 and response.location.startswith("/login")
    thief.set_cookie("session", thief.stolen)
    response = thief.post("/extensions/new", data={"number": "1003", "mode": "generate",
                                                   "csrf_token": token})
    assert response.status_code == 302 and response.location.startswith("/login")
    assert Extension.by_number("1003") is None
    assert not AuditEntry.select().where(AuditEntry.action == "extension.create").exists()


# Finding 7: sessions end server-side

def test_a_cookie_copied_before_logout_is_refused_after_it(app):
    browser, thief, token = logged_in_with_a_copy(app)
    assert browser.post("/logout", data={"csrf_token": token_of(browser)}).status_code == 302
    assert_refused(thief, token)
    # Logging in again makes a new session, not the old one back.
    assert log_in(browser).status_code == 302
    assert browser.get("/extensions/").status_code == 200
    assert_refused(thief, token)


def test_logout_ends_the_admins_other_sessions_too(app):
    laptop, _, _ = logged_in_with_a_copy(app)
    phone = app.test_client()
    assert log_in(phone).status_code == 302
    viewer = app.test_client()
    assert log_in(viewer, *VIEWER).status_code == 302
    laptop.post("/logout", data={"csrf_token": token_of(laptop)})
    assert phone.get("/extensions/").status_code == 302
    assert viewer.get("/extensions/").status_code == 200  # another admin's session is theirs


def test_a_cookie_copied_before_pbxctl_admin_passwd_is_refused_after_it(app, tmp_path):
    _, thief, token = logged_in_with_a_copy(app)
    result = pbxctl(tmp_path, "admin", "passwd", "admin", "--password", NEW_PASSWORD)
    assert result.returncode == 0, result.stderr
    assert_refused(thief, token)
    assert log_in(app.test_client(), ADMIN[0], NEW_PASSWORD).status_code == 302


def test_a_cookie_copied_before_pbxctl_admin_disable_is_refused_after_it(app, tmp_path):
    _, thief, token = logged_in_with_a_copy(app)
    result = pbxctl(tmp_path, "admin", "disable", "admin")
    assert result.returncode == 0, result.stderr
    assert "Admin admin disabled" in result.stdout
    assert_refused(thief, token)
    # A disabled admin cannot log in, and is told no more than for a wrong password.
    response = log_in(app.test_client())
    assert response.status_code == 200 and b"Wrong user name or password." in response.data
    assert pbxctl(tmp_path, "admin", "enable", "admin").returncode == 0
    assert log_in(app.test_client()).status_code == 302
    listing = pbxctl(tmp_path, "admin", "list").stdout.splitlines()
    assert listing[0].split() == ["USER", "ROLE", "STATE", "LAST", "LOGIN"]
    assert [line.split()[:3] for line in listing[1:]] == [["admin", "admin", "enabled"],
                                                          ["viewer", "viewer", "enabled"]]


def test_a_new_password_in_the_panel_ends_the_other_sessions_not_this_one(app):
    browser, thief, token = logged_in_with_a_copy(app)
    elsewhere = app.test_client()
    assert log_in(elsewhere).status_code == 302
    response = browser.post("/account", data={
        "current": ADMIN[1], "password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
        "csrf_token": token_of(browser, "/account")})
    assert response.status_code == 302
    assert browser.get("/extensions/").status_code == 200  # goes on, under its new cookie
    assert elsewhere.get("/extensions/").status_code == 302
    assert_refused(thief, token)
    assert log_in(app.test_client(), ADMIN[0], NEW_PASSWORD).status_code == 302


def test_the_password_page_wants_the_current_password(app):
    browser, thief, _ = logged_in_with_a_copy(app)
    # A thief with the session but not the password cannot lock the owner out.
    response = thief.post("/account", data={
        "current": "a-guess-at-it-1", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
        "csrf_token": token_of(thief, "/account")})
    assert response.status_code == 200
    assert b"This is not your current password." in response.data
    assert log_in(app.test_client()).status_code == 302  # the old password still works


# Finding 8: no lockout of the real admin from another address

def test_failures_from_one_address_do_not_lock_the_admin_out_elsewhere(app, clock):
    attacker = app.test_client()
    for _ in range(5):
        log_in(attacker, ADMIN[0], "wrong-password-9", address=ATTACKER)
    # The attacker's address is throttled, even with the right password...
    response = log_in(attacker, address=ATTACKER)
    assert response.status_code == 429
    assert b"Too many failed logins, try again in 30 s." in response.data
    # ...the admin, from the office, is not.
    assert log_in(app.test_client(), address=OFFICE).status_code == 302
    # One guess per lock window, for a day: the admin still gets in every time,
    # the attacker's windows keep doubling to the cap.
    for _ in range(96):
        clock[0] += throttle.MAX_LOCK + 1
        assert log_in(attacker, ADMIN[0], "wrong-password-9", address=ATTACKER).status_code == 200
        assert log_in(attacker, address=ATTACKER).status_code == 429
        assert log_in(app.test_client(), address=OFFICE).status_code == 302


def test_the_attackers_own_account_does_not_reset_their_count(app, clock):
    attacker = app.test_client()
    for _ in range(4):
        log_in(attacker, ADMIN[0], "wrong-password-9", address=ATTACKER)
    assert log_in(app.test_client(), *VIEWER, address=ATTACKER).status_code == 302
    response = log_in(attacker, ADMIN[0], "wrong-password-9", address=ATTACKER)
    assert b"Too many failed logins, try again in 30 s." in response.data
    assert log_in(attacker, address=ATTACKER).status_code == 429
    assert log_in(app.test_client(), address=OFFICE).status_code == 302


def test_an_ipv6_attacker_is_one_source_however_many_addresses(app, clock):
    attacker = app.test_client()
    for number in range(1, 6):
        log_in(attacker, ADMIN[0], "wrong-password-9", address=f"2001:db8:1:2::{number:x}")
    assert log_in(attacker, address="2001:db8:1:2:ffff::99").status_code == 429
    assert log_in(app.test_client(), address=OFFICE).status_code == 302


# Finding 8: user names are case-insensitive

def test_pbxctl_admin_add_refuses_a_name_that_differs_only_in_case(app, tmp_path):
    result = pbxctl(tmp_path, "admin", "add", "Admin", "--password", NEW_PASSWORD)
    assert result.returncode == 1
    assert result.stderr == ("pbxctl: admin admin already exists; user names are not"
                             " case-sensitive, so Admin would be the same user\n")
    assert Admin.select().count() == 2


def test_login_and_pbxctl_find_the_admin_in_any_case(app, tmp_path, cheap_dummy_hash):
    browser = app.test_client()
    assert log_in(browser, "ADMIN", ADMIN[1]).status_code == 302
    assert b">admin</a>" in browser.get("/extensions/").data
    result = pbxctl(tmp_path, "admin", "passwd", "AdMiN", "--password", NEW_PASSWORD)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Password of admin admin changed")
    assert log_in(app.test_client(), "Admin", NEW_PASSWORD).status_code == 302


def test_the_migration_renames_existing_case_duplicates(tmp_path):
    """A database from before 0006 with "admin" and "Admin": pbxctl init keeps the first's
    name, renames the other one, says so, and both log in."""
    path = tmp_path / "pbx.db"
    database = connect(load_settings({"PBX_DB": str(path)}), migrate=False)
    database.create_tables([SchemaVersion])
    for number, name in migrations.available():
        if number < 6:
            __import__(f"core.migrations.{name}", fromlist=["up"]).up(None, database)
            SchemaVersion.create(version=number)
    for name, password in (("admin", ADMIN[1]), ("Admin", "other-password-2")):
        database.execute_sql(
            'INSERT INTO "admin" ("username", "password_hash", "role", "created_at")'
            " VALUES (?, ?, 'admin', 0)",
            (name, _hash(password)))
    database.close()
    result = pbxctl(tmp_path, "init")
    assert result.returncode == 0, result.stderr
    assert "Admin 'Admin' renamed to 'Admin.dup2'" in result.stderr
    with sqlite3.connect(path) as conn:
        assert conn.execute('SELECT "username" FROM "admin" ORDER BY "id"').fetchall() == [
            ("admin",), ("Admin.dup2",)]
        assert conn.execute('SELECT "action", "target", "detail" FROM "audit_log"').fetchall() == [
            ("admin.rename", "Admin.dup2", "was 'Admin', the same user name as 'admin' in"
             " another case")]
    app = make_app_on(tmp_path)
    assert log_in(app.test_client(), "admin", ADMIN[1]).status_code == 302
    assert log_in(app.test_client(), "admin.DUP2", "other-password-2").status_code == 302
    db.close()


def _hash(password):
    from werkzeug.security import generate_password_hash

    return generate_password_hash(password, method="pbkdf2:sha256:1000")


def make_app_on(tmp_path):
    """The panel on an existing database (make_app would add its own admins)."""
    from app import create_app

    return create_app({"TESTING": True, "DB_PATH": str(tmp_path / "pbx.db"), "REALM": REALM,
                       "SECRET_KEY": SECRET, "WTF_CSRF_ENABLED": True})


# Finding 10: blank admin passwords

@pytest.mark.parametrize("password", [" " * 10, "\t" * 12, "short" + " " * 10])
def test_pbxctl_refuses_a_blank_admin_password(app, tmp_path, password):
    result = pbxctl(tmp_path, "admin", "passwd", "admin", "--password", password)
    assert result.returncode == 1
    assert result.stderr.startswith("pbxctl: password must ")
    assert result.stderr.count("\n") == 1
    result = pbxctl(tmp_path, "admin", "add", "boss", "--password", password)
    assert result.returncode == 1 and result.stderr.startswith("pbxctl: password must ")
    assert Admin.by_username("boss") is None
    assert log_in(app.test_client()).status_code == 302  # the old password still works


def test_the_panel_refuses_a_blank_new_password(app):
    browser = app.test_client()
    log_in(browser)
    response = browser.post("/account", data={
        "current": ADMIN[1], "password": " " * 10, "confirm": " " * 10,
        "csrf_token": token_of(browser, "/account")})
    assert response.status_code == 200
    assert b"The password must not be blank." in response.data
    assert log_in(app.test_client()).status_code == 302


# Finding 10: CSV cells a spreadsheet would run

FORMULA = "=+-@"


def runs_as_formula(cell: str) -> bool:
    return cell.lstrip(" \t\r\n\u00a0")[:1] in set(FORMULA)


def test_the_csv_guards_formulas_behind_blanks_and_separators(app, rows):
    browser = app.test_client()
    log_in(browser)
    rows.call("1002", " =1+1", reason=";=1+1")  # the callee from a Request-URI's %20
    rows.call("1002", "1003", reason="Busy;=HYPERLINK(\"http://evil.example\")",
              started_at=time.time() - 100)
    rows.call("1002", "1004", reason="\u00a0@SUM(1+1)", started_at=time.time() - 200)
    text = browser.get("/calls/export.csv").data.decode()
    # As read with a comma, and as a spreadsheet whose list separator is ";" or a tab reads it.
    for delimiter in (",", ";", "\t"):
        for row in csv.reader(io.StringIO(text), delimiter=delimiter):
            for cell in row:
                assert not runs_as_formula(cell), (delimiter, cell)
    table = list(csv.reader(io.StringIO(text)))
    assert table[1][4] == "' =1+1" and table[1][9] == "';'=1+1"
    assert table[2][9] == "Busy;'=HYPERLINK(\"http://evil.example\")"


# Finding 10: dates and numbers out of range are a form error, not a 500

@pytest.mark.parametrize("query", [{"until": "9999-12-31"}, {"since": "9999-12-31"},
                                   {"since": "0001-01-01"}])
def test_a_date_out_of_range_is_a_form_error(app, rows, query):
    browser = app.test_client()
    log_in(browser)
    rows.call()
    response = browser.get("/calls/", query_string=query)
    assert response.status_code == 400
    assert b"Enter a date from 1970-01-01 to 2999-12-31." in response.data
    response = browser.get("/calls/export.csv", query_string=query)
    assert response.status_code == 400
    assert b"Enter a date from 1970-01-01 to 2999-12-31." in response.data


def test_a_call_id_past_64_bits_is_a_404(app):
    browser = app.test_client()
    log_in(browser)
    response = browser.post(f"/calls/{2**63}/hangup",
                            data={"csrf_token": token_of(browser, "/calls/active")})
    assert response.status_code == 404


# Finding 10: the Host header is not reflected

@pytest.mark.parametrize("path", ["/calls", "//calls", "/calls//active"])
def test_redirects_do_not_name_the_requested_host(app, path):
    response = app.test_client().get("/", environ_overrides={"PATH_INFO": path},
                                     headers={"Host": "evil.example"})
    assert response.status_code == 308
    assert response.location.startswith("/calls/")
    assert not response.location.startswith("//")
    assert "evil.example" not in response.location

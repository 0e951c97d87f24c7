"""Extensions: the list with live status, create, one-time password, edit, disable, delete."""

import time

import pytest
from panel_testing import REALM, shown_password

from core import phone_settings
from core.credentials import GENERATED_LENGTH, ha1
from core.models import Binding, Extension


def ha1_matches(number, password):
    extension = Extension.by_number(number)
    return (extension.ha1_md5 == ha1(number, REALM, password, "MD5")
            and extension.ha1_sha256 == ha1(number, REALM, password, "SHA-256"))


def create(client, number="1002", name="", mode="generate", password="", confirm=None,
           enabled=True):
    data = {"number": number, "name": name, "mode": mode, "password": password,
            "confirm": password if confirm is None else confirm}
    if enabled:
        data["enabled"] = "y"
    return client.post("/extensions/new", data=data)


# The list

def test_list_empty(admin_client):
    response = admin_client.get("/extensions/")
    assert response.status_code == 200
    assert b"No extensions yet." in response.data
    assert b"New extension" in response.data


def test_list_in_numeric_order(admin_client, rows):
    for number in ("1001", "201", "99"):
        rows.extension(number)
    page = admin_client.get("/extensions/").data.decode()
    assert page.index('id="ext-99"') < page.index('id="ext-201"') < page.index('id="ext-1001"')


def test_list_shows_live_binding_data(admin_client, rows):
    alice = rows.extension("1002", name="Alice")
    rows.extension("1003", name="Bob")
    rows.extension("1004", name="Carol", enabled=False)
    rows.binding(alice, contact="sip:1002@198.51.100.20:50600;ob", source_host="198.51.100.20",
                 source_port=50600, transport="TCP", user_agent="Zoiper rv2.10.20.3",
                 expires_at=time.time() + 250)
    rows.binding(alice, contact="sip:1002@198.51.100.21:5060", call_id="other",
                 user_agent="MicroSIP/3.21.3")
    # Expired: sipd has not reaped it yet, the panel must not count it.
    rows.binding(Extension.by_number("1003"), expires_at=time.time() - 1)

    page = admin_client.get("/extensions/").data.decode()
    row_1002 = page[page.index('id="ext-1002"'):page.index('id="ext-1003"')]
    assert 'data-status="registered"' in row_1002
    assert "Registered ×2" in row_1002
    assert "sip:1002@198.51.100.20:50600;ob" in row_1002
    assert "198.51.100.20:50600" in row_1002 and "TCP" in row_1002
    assert "Zoiper rv2.10.20.3" in row_1002
    assert "MicroSIP/3.21.3" in row_1002
    assert "4 min" in row_1002  # about 250 s left

    row_1003 = page[page.index('id="ext-1003"'):page.index('id="ext-1004"')]
    assert 'data-status="unregistered"' in row_1003
    assert "Not registered" in row_1003
    assert "192.0.2.10" not in row_1003

    row_1004 = page[page.index('id="ext-1004"'):]
    assert 'data-status="disabled"' in row_1004
    assert "2 registered" not in page and "1 registered" in page


# Create, and the password shown once

def test_create_page(admin_client):
    response = admin_client.get("/extensions/new")
    assert response.status_code == 200
    assert b'name="number"' in response.data
    assert b'value="generate"' in response.data


def test_create_with_generated_password_shows_it_once(admin_client):
    response = create(admin_client, "1002", name="Reception")
    assert response.status_code == 200  # rendered in the POST response, no redirect
    assert response.headers["Cache-Control"] == "no-store"
    page = response.data.decode()
    password = shown_password(page)
    assert len(password) == GENERATED_LENGTH
    assert ha1_matches("1002", password)
    assert "shown only this once" in page
    # What a softphone needs, MicroSIP's account dialog included; the address is the one
    # phones can use (never the realm), see tests/web/test_phone_settings.py.
    address, _ = phone_settings.detect(admin_client.application.config["PBX_SETTINGS"])
    for label, value in [("SIP server", f"{address}:5060"), ("Domain", address), ("Port", "5060"),
                         ("Transport", "UDP or TCP"), ("User name (Username)", "1002"),
                         ("Auth user (Login)", "1002"), ("Display name", "Reception")]:
        assert f"<dt>{label}</dt>\n    \n    <dd><code>{value}</code> <button" in page, label

    extension = Extension.by_number("1002")
    assert extension.name == "Reception" and extension.enabled and extension.realm == REALM
    # Nowhere else, ever: not the next pages, not the session.
    for path in ("/extensions/", "/extensions/1002", "/extensions/1002/password"):
        assert password not in admin_client.get(path).data.decode()
    with admin_client.session_transaction() as session:
        assert password not in repr(dict(session))


def test_create_with_own_password(admin_client):
    response = create(admin_client, "1002", mode="set", password="Correct-Horse-9")
    assert shown_password(response.data.decode()) == "Correct-Horse-9"
    assert ha1_matches("1002", "Correct-Horse-9")


def test_create_disabled(admin_client):
    create(admin_client, "1002", enabled=False)
    assert not Extension.by_number("1002").enabled


@pytest.mark.parametrize(("number", "password", "message"), [
    ("1002", "short1", "Password must be at least 10 characters."),
    ("1234567890", "1234567890", "Password must not be the extension number."),
    ("1002", "12345678901", "Password must not be digits only."),
    ("1002", 'has"quote-12', "Password must not contain &#34; or \\."),
    ("1002", "tab\there-1234", "Password must not contain control characters."),
    ("1002", "", "Type the password, or choose to generate one."),
])
def test_create_refuses_a_weak_password(admin_client, number, password, message):
    response = create(admin_client, number, mode="set", password=password)
    assert response.status_code == 200
    assert message in response.data.decode()
    assert 'id="shown-password"' not in response.data.decode()
    assert Extension.by_number(number) is None


def test_create_refuses_differing_passwords(admin_client):
    response = create(admin_client, mode="set", password="Correct-Horse-9",
                      confirm="Correct-Horse-8")
    assert b"The two passwords differ." in response.data
    assert Extension.by_number("1002") is None


@pytest.mark.parametrize(("number", "message"), [
    ("", "This field is required."),
    ("1", "Extension number &#39;1&#39; must be 2 to 15 digits."),
    ("10a2", "Extension number &#39;10a2&#39; must be 2 to 15 digits."),
])
def test_create_refuses_a_bad_number(admin_client, number, message):
    response = create(admin_client, number)
    assert message in response.data.decode()
    assert Extension.select().count() == 0


def test_create_refuses_a_duplicate(admin_client, rows):
    rows.extension("1002")
    response = create(admin_client, "1002")
    assert b"Extension 1002 already exists." in response.data


def test_create_refuses_a_bad_display_name(admin_client):
    response = create(admin_client, "1002", name="x" * 101)
    assert b"Display name must be at most 100 characters." in response.data
    assert Extension.select().count() == 0


# One extension's page

def test_show_extension(admin_client, rows):
    extension = rows.extension("1002", name="Alice")
    rows.binding(extension, user_agent="Linphone/5.2.5", source_host="198.51.100.9",
                 instance='"<urn:uuid:00000000-0000-1000-8000-000000000001>"')
    page = admin_client.get("/extensions/1002").data.decode()
    assert "Alice" in page and "Registered" in page
    assert "Linphone/5.2.5" in page and "198.51.100.9:5062" in page
    assert "urn:uuid:00000000-0000-1000-8000-000000000001" in page
    for action in ("/edit", "/password", "/disable", "/delete"):
        assert f"/extensions/1002{action}" in page


def test_show_unknown_extension(admin_client):
    assert admin_client.get("/extensions/4711").status_code == 404


def test_show_answers_why_1002_gets_403(admin_client, rows):
    rows.extension("1002")
    rows.attempt("1002", result="challenge", reason="no credentials", created_at=time.time() - 60)
    rows.attempt("1002", result="failure", reason="wrong password", source_host="203.0.113.7",
                 source_port=48355, user_agent="MicroSIP/3.21.3", created_at=time.time() - 30)
    rows.attempt("1002", result="success", reason="", user_agent="MicroSIP/3.21.3",
                 created_at=time.time() - 10)
    rows.attempt("1003", result="failure", reason="unknown extension")
    page = admin_client.get("/extensions/1002").data.decode()
    table = page[page.index('id="attempts"'):]
    assert "wrong password" in table and "no credentials" in table
    assert "203.0.113.7:48355" in table and "MicroSIP/3.21.3" in table
    assert ">failure<" in table and ">success<" in table and ">no answer<" in table
    assert "unknown extension" not in table  # another number's attempt
    # Newest first.
    assert table.index(">success<") < table.index(">failure<") < table.index(">no answer<")


def test_show_warns_about_a_changed_realm(admin_client, rows):
    extension = rows.extension("1002")
    Extension.update(realm="old.example").where(Extension.id == extension.id).execute()
    page = admin_client.get("/extensions/1002").data.decode()
    assert 'id="realm-warning"' in page
    assert "old.example" in page
    admin_client.post("/extensions/1002/password", data={"mode": "generate"})
    assert 'id="realm-warning"' not in admin_client.get("/extensions/1002").data.decode()


# Edit, disable, enable

def test_edit_page_is_filled_in(admin_client, rows):
    rows.extension("1002", name="Alice")
    page = admin_client.get("/extensions/1002/edit").data.decode()
    assert 'value="Alice"' in page
    assert "checked" in page


def test_edit(admin_client, rows):
    rows.extension("1002", name="Alice")
    response = admin_client.post("/extensions/1002/edit", data={"name": "Alice B.", "enabled": "y"})
    assert response.status_code == 302
    assert response.location == "/extensions/1002"
    extension = Extension.by_number("1002")
    assert extension.name == "Alice B." and extension.enabled
    assert b"Extension 1002 saved." in admin_client.get("/extensions/1002").data


def test_edit_unchecked_disables_and_drops_bindings(admin_client, rows):
    extension = rows.extension("1002")
    rows.binding(extension)
    admin_client.post("/extensions/1002/edit", data={"name": ""})
    assert not Extension.by_number("1002").enabled
    assert Binding.select().count() == 0


def test_edit_refuses_a_bad_name(admin_client, rows):
    rows.extension("1002", name="Alice")
    response = admin_client.post("/extensions/1002/edit", data={"name": "a\x07b", "enabled": "y"})
    assert b"Display name must not contain control characters." in response.data
    assert Extension.by_number("1002").name == "Alice"


def test_disable_and_enable(admin_client, rows):
    extension = rows.extension("1002")
    rows.binding(extension)
    response = admin_client.post("/extensions/1002/disable")
    assert response.status_code == 302 and response.location == "/extensions/1002"
    assert not Extension.by_number("1002").enabled
    assert Binding.select().count() == 0
    page = admin_client.get("/extensions/1002").data.decode()
    assert "its registrations were removed" in page and "Disabled" in page
    assert "/extensions/1002/enable" in page

    admin_client.post("/extensions/1002/enable")
    assert Extension.by_number("1002").enabled


def test_disable_needs_post(admin_client, rows):
    rows.extension("1002")
    assert admin_client.get("/extensions/1002/disable").status_code == 405
    assert Extension.by_number("1002").enabled


# Passwords

def test_password_page(admin_client, rows):
    rows.extension("1002")
    response = admin_client.get("/extensions/1002/password")
    assert response.status_code == 200
    assert b"New password for 1002" in response.data


def test_generate_password(admin_client, rows):
    rows.extension("1002", password="old-password-1")
    response = admin_client.post("/extensions/1002/password", data={"mode": "generate"})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    password = shown_password(response.data.decode())
    assert len(password) == GENERATED_LENGTH
    assert ha1_matches("1002", password)
    assert not ha1_matches("1002", "old-password-1")
    assert password not in admin_client.get("/extensions/1002").data.decode()


def test_set_password(admin_client, rows):
    rows.extension("1002", password="old-password-1")
    response = admin_client.post("/extensions/1002/password", data={
        "mode": "set", "password": "New-password-22", "confirm": "New-password-22"})
    assert shown_password(response.data.decode()) == "New-password-22"
    assert ha1_matches("1002", "New-password-22")


@pytest.mark.parametrize(("password", "message"), [
    ("short1", "Password must be at least 10 characters."),
    ("98765432101", "Password must not be digits only."),
])
def test_set_password_refuses_a_weak_one(admin_client, rows, password, message):
    rows.extension("1002", password="old-password-1")
    response = admin_client.post("/extensions/1002/password", data={
        "mode": "set", "password": password, "confirm": password})
    assert message in response.data.decode()
    assert ha1_matches("1002", "old-password-1")


def test_set_password_equal_to_number_refused(admin_client, rows):
    rows.extension("1234567890", password="old-password-1")
    response = admin_client.post("/extensions/1234567890/password", data={
        "mode": "set", "password": "1234567890", "confirm": "1234567890"})
    assert b"Password must not be the extension number." in response.data
    assert ha1_matches("1234567890", "old-password-1")


# Delete

def test_delete_asks_first(admin_client, rows):
    rows.extension("1002", name="Alice")
    response = admin_client.get("/extensions/1002/delete")
    assert response.status_code == 200
    assert b"Delete extension 1002?" in response.data
    assert Extension.by_number("1002") is not None


def test_delete(admin_client, rows):
    extension = rows.extension("1002")
    rows.binding(extension)
    response = admin_client.post("/extensions/1002/delete")
    assert response.status_code == 302 and response.location == "/extensions/"
    assert Extension.by_number("1002") is None
    assert Binding.select().count() == 0
    assert b"Extension 1002 deleted." in admin_client.get("/extensions/").data
    assert admin_client.post("/extensions/1002/delete").status_code == 404

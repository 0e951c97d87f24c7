"""Passwords in the panel and pbxctl: guessable ones refused with the reason, what was typed
is what is set, and the real length limit said (issue 15 item 4).

The panel runs on a real temporary database (conftest.py); pbxctl runs as an
admin runs it, ./pbxctl in a subprocess on that same database.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from panel_testing import ADMIN, REALM, ROOT, shown_password

from core.credentials import ha1
from core.models import AuditEntry, Extension

TOO_LONG = "Tq7-Lm3-Zp9-" * 10 + "Wd4-Rx8-K"  # 129 characters


def create(client, number="1001", mode="set", password="", confirm=None):
    return client.post("/extensions/new", data={
        "number": number, "name": "", "mode": mode, "enabled": "y",
        "password": password, "confirm": password if confirm is None else confirm,
    })


def sets_password(number: str, password: str) -> bool:
    extension = Extension.by_number(number)
    return extension is not None and extension.ha1_md5 == ha1(number, REALM, password)


def errors(html: str) -> list[str]:
    return re.findall(r'<p class="error">([^<]*)</p>', html)


@pytest.mark.parametrize(("password", "message"), [
    ("password123",
     "Password is one of the most common passwords (or one with digits or symbols added)."),
    ("aaaaaaaaaa", "Password must not be mostly one repeated character."),
    ("abc1001defgh", "Password must not contain the extension number (1001)."),
    (" " * 10, "Password must not be blank."),
    ("qwertyuiop12", "Password must not be a simple sequence such as abcdef, 123456 or qwerty."),
    ("my-pbx.test-phone", "Password must not contain the realm (pbx.test)."),
])
def test_the_new_extension_form_refuses_a_guessable_password(admin_client, password, message):
    response = create(admin_client, "1001", password=password)
    assert response.status_code == 200
    assert errors(response.data.decode()) == [message.replace('"', "&#34;")]
    assert Extension.by_number("1001") is None


def test_the_password_page_refuses_a_guessable_password(admin_client, rows):
    rows.extension("1001")
    response = admin_client.post("/extensions/1001/password", data={
        "mode": "set", "password": "Password123!", "confirm": "Password123!"})
    assert errors(response.data.decode()) == [
        "Password is one of the most common passwords (or one with digits or symbols added)."]
    assert sets_password("1001", "correct-horse-1")


def test_a_password_typed_while_generate_stayed_selected_is_the_one_set(admin_client):
    response = create(admin_client, "1001", mode="generate", password="tram-lemon-quiet-4")
    assert response.status_code == 200
    assert shown_password(response.data.decode()) == "tram-lemon-quiet-4"
    assert sets_password("1001", "tram-lemon-quiet-4")
    entry = AuditEntry.get(AuditEntry.action == "extension.create")
    assert entry.detail == "password set"


def test_a_typed_password_is_checked_even_with_generate_selected(admin_client, rows):
    rows.extension("1001")
    response = admin_client.post("/extensions/1001/password", data={
        "mode": "generate", "password": "password123", "confirm": "password123"})
    page = response.data.decode()
    assert "Password is one of the most common passwords" in page
    # The form now shows the choice the typing made.
    assert re.search(r'<input checked id="mode-1" name="mode" type="radio" value="set">', page)
    assert sets_password("1001", "correct-horse-1")


def test_129_characters_are_refused_for_their_length_not_as_differing(admin_client):
    assert len(TOO_LONG) == 129
    response = create(admin_client, "1001", password=TOO_LONG)
    assert errors(response.data.decode()) == [
        "Password must be at most 128 characters (this one has 129)."]
    assert Extension.by_number("1001") is None
    # One fewer is the limit itself.
    response = create(admin_client, "1001", password=TOO_LONG[:128])
    assert shown_password(response.data.decode()) == TOO_LONG[:128]
    assert sets_password("1001", TOO_LONG[:128])


def test_the_length_error_comes_first_even_if_the_browser_cut_one_field(admin_client):
    response = create(admin_client, "1001", password=TOO_LONG, confirm=TOO_LONG[:128])
    assert errors(response.data.decode()) == [
        "Password must be at most 128 characters (this one has 129)."]


@pytest.mark.parametrize("path", ["/extensions/new", "/extensions/1001/password", "/account"])
def test_neither_password_field_is_cut_by_the_browser(admin_client, rows, path):
    # A maxlength on one field and not the other made a paste of 129 characters
    # "two passwords that differ"; the server says the limit instead.
    rows.extension("1001")
    page = admin_client.get(path).data.decode()
    fields = re.findall(r'<input[^>]*type="password"[^>]*>', page)
    new_fields = [f for f in fields if 'autocomplete="new-password"' in f]
    assert len(new_fields) == 2
    assert not any("maxlength" in f for f in new_fields)


def test_the_hint_says_the_limits(admin_client):
    page = admin_client.get("/extensions/new").data.decode()
    assert "10 to 128 characters; not a common password" in page


def test_an_admin_cannot_choose_a_common_password_for_themself(admin_client):
    response = admin_client.post("/account", data={
        "current": ADMIN[1], "password": "Password123", "confirm": "Password123"})
    assert ("The password is one of the most common passwords (or one with digits or symbols"
            " added).") in response.data.decode()


def test_an_admin_cannot_choose_their_user_name_for_a_password(admin_client):
    response = admin_client.post("/account", data={
        "current": ADMIN[1], "password": "admin-for-ever-7", "confirm": "admin-for-ever-7"})
    assert "The password must not contain the user name (admin)." in response.data.decode()


def test_an_admin_sees_the_real_limit_of_their_own_password(admin_client):
    long = "Tq7-Lm3-Zp9-" * 22  # 264 characters
    response = admin_client.post("/account", data={
        "current": ADMIN[1], "password": long, "confirm": long})
    assert "The password must be at most 256 characters (this one has 264)." in \
        response.data.decode()


def pbxctl(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """./pbxctl as an admin runs it, on the panel's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBX_")}
    env.update(PBX_DB=str(tmp_path / "pbx.db"), PBX_REALM=REALM, PBX_PYTHON=sys.executable)
    return subprocess.run([str(ROOT / "pbxctl"), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("password", "why"), [
    ("password123", "is one of the most common passwords"),
    ("aaaaaaaaaa", "must not be mostly one repeated character"),
    ("abc1001defgh", "must not contain the extension number (1001)"),
    (" " * 10, "must not be blank"),
])
def test_pbxctl_ext_add_refuses_a_guessable_password_in_one_line(app, tmp_path, password, why):
    result = pbxctl(tmp_path, "ext", "add", "1001", "--password", password)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and why in lines[0], result.stderr
    assert Extension.by_number("1001") is None


def test_pbxctl_ext_import_refuses_a_guessable_password(app, tmp_path):
    csv = tmp_path / "phones.csv"
    csv.write_text("1001,Reception,password123\n")
    result = pbxctl(tmp_path, "ext", "import", str(csv))
    assert result.returncode != 0
    assert "is one of the most common passwords" in result.stderr
    assert Extension.by_number("1001") is None

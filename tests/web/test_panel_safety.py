"""What a phone or a scanner sends is shown escaped; a viewer may look but not change."""

import pytest
from panel_testing import VIEWER

from core.models import Binding, Extension

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture
def hostile(rows):
    """Every SIP-originated field carrying markup, as a hostile phone would send it."""
    extension = rows.extension("1002", name=f'Eve {SCRIPT}')
    rows.binding(extension, user_agent=SCRIPT, contact=f'sip:1002@192.0.2.1;x="{SCRIPT}"',
                 instance=f'"<urn:uuid:{SCRIPT}>"')
    rows.attempt("1002", user_agent=SCRIPT, reason=f"wrong password {SCRIPT}")
    rows.attempt(f"{SCRIPT}", user_agent=SCRIPT, reason="unknown extension")
    for live in (False, True):
        rows.call("1002", f"1003{SCRIPT}", live=live, caller_name=f"Eve {SCRIPT}",
                  caller_source=f"192.0.2.1:5060/{SCRIPT}", callee_contact=f"sip:{SCRIPT}@x",
                  reason=f"Busy {SCRIPT}", caller_media=SCRIPT, callee_media=SCRIPT, codec=SCRIPT)
    return extension


@pytest.mark.parametrize("path", [
    "/extensions/", "/extensions/1002", "/registrations/", "/security/failures",
    "/extensions/1002/edit", "/extensions/1002/delete", "/calls/", "/calls/active",
    "/calls/?extension=1002",
])
def test_sip_originated_text_is_escaped(admin_client, hostile, path):
    response = admin_client.get(path)
    assert response.status_code == 200
    # The one script the panel has, from /static, is not what we look for.
    page = response.data.decode().replace(
        '<script src="/static/active_calls.js" defer></script>', "")
    assert SCRIPT not in page
    assert "<script" not in page
    assert ESCAPED in page or "&lt;script&gt;" in page


def test_the_live_calls_json_is_json(admin_client, hostile):
    # The script puts these in with textContent; the response itself is never HTML.
    response = admin_client.get("/calls/active.json")
    assert response.mimetype == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    (call,) = response.get_json()["calls"]
    assert call["caller_name"] == f"Eve {SCRIPT}"


def test_escaped_on_the_password_page(admin_client):
    response = admin_client.post("/extensions/new", data={
        "number": "1002", "name": SCRIPT, "mode": "generate", "enabled": "y"})
    assert SCRIPT not in response.data.decode()
    assert ESCAPED in response.data.decode()


# The viewer role

@pytest.fixture
def viewer_client(client, auth, rows):
    extension = rows.extension("1002", name="Alice")
    rows.binding(extension)
    auth.login_viewer()
    return client


@pytest.mark.parametrize("path", [
    "/extensions/", "/extensions/1002", "/registrations/", "/security/failures",
    "/calls/", "/calls/active", "/security/audit", "/security/bans", "/settings/",
])
def test_viewer_can_look(viewer_client, path):
    response = viewer_client.get(path)
    assert response.status_code == 200
    page = response.data.decode()
    assert "viewer</span>" in page
    # No buttons that would only answer 403.
    for action in ("/extensions/new", "/edit", "/password", "/disable", "/delete", "/hangup"):
        assert f'{action}"' not in page


@pytest.mark.parametrize(("path", "data"), [
    ("/extensions/new", {"number": "1003", "mode": "generate", "enabled": "y"}),
    ("/extensions/1002/edit", {"name": "Mallory", "enabled": "y"}),
    ("/extensions/1002/disable", {}),
    ("/extensions/1002/enable", {}),
    ("/extensions/1002/password", {"mode": "generate"}),
    ("/extensions/1002/delete", {}),
])
def test_viewer_is_forbidden_to_post(viewer_client, path, data):
    before = Extension.by_number("1002")
    response = viewer_client.post(path, data=data)
    assert response.status_code == 403
    after = Extension.by_number("1002")
    assert Extension.select().count() == 1
    assert (after.name, after.enabled, after.ha1_md5) == (before.name, before.enabled,
                                                         before.ha1_md5)
    assert Binding.select().count() == 1


def test_viewer_can_log_out(viewer_client, auth):
    assert auth.logout().status_code == 302
    assert viewer_client.get("/extensions/").status_code == 302


def test_viewer_name_is_shown(viewer_client):
    assert VIEWER[0].encode() in viewer_client.get("/extensions/").data


def test_a_hostile_path_is_escaped_in_the_404(admin_client):
    response = admin_client.get("/extensions/%3Cimg%20src=x%20onerror=alert(1)%3E")
    assert response.status_code == 404
    assert "<img src=x" not in response.data.decode()
    assert "There is no extension &lt;img src=x onerror=alert(1)&gt;." in response.data.decode()

"""Bans: the list with reason and counters, and lifting one (admin only, audited),
on rows written as sipd writes them (core/bans.py)."""

import time

import pytest
from panel_testing import ADMIN, csrf_token, make_app

from core import bans
from core.models import AuditEntry, Ban, db


def ban(address, reason="5 failed authentications in 600 s", failures=5, offences=1,
        created=None, expires=3600, lifted_by=None):
    now = time.time()
    created = now - 60 if created is None else created
    ban_id = bans.add(db.connection(), address, reason, failures, offences, created,
                      created + expires)
    if lifted_by:
        Ban.update(lifted_at=created + 10, lifted_by=lifted_by).where(Ban.id == ban_id).execute()
    return ban_id


def test_bans_empty(admin_client):
    response = admin_client.get("/security/bans")
    assert response.status_code == 200
    assert b"No address is banned right now." in response.data


def test_bans_list_with_reason_and_counters(admin_client):
    first = ban("203.0.113.7", failures=6, offences=3, expires=4 * 3600 + 30)
    ban("2001:db8::66", reason="scanner User-Agent friendly-scanner", failures=1)
    ban("198.51.100.1", created=time.time() - 7200, expires=3600)  # expired
    ban("198.51.100.2", lifted_by="cli:root")
    page = admin_client.get("/security/bans").data.decode()
    active = page[page.index('id="bans"'):page.index("Earlier bans")]
    row = active[active.index(f'id="ban-{first}"'):]
    for text in ("203.0.113.7", "5 failed authentications in 600 s", ">6<", "3", "repeat",
                 "3 h 59 min", "Lift"):
        assert text in row, text
    assert "2001:db8::66" in active and "scanner User-Agent friendly-scanner" in active
    assert "198.51.100.1" not in active and "198.51.100.2" not in active
    history = page[page.index('id="ban-history"'):]
    assert "198.51.100.1" in history and "expired 1 h ago" in history
    assert "198.51.100.2" in history and "lifted by cli:root" in history


def test_lift_a_ban(admin_client):
    ban("203.0.113.7")
    ban("203.0.113.8")
    response = admin_client.post("/security/bans/lift", data={"address": "203.0.113.7"},
                                 environ_base={"REMOTE_ADDR": "192.0.2.44"})
    assert response.status_code == 302 and response.location == "/security/bans"
    page = admin_client.get(response.location).data.decode()
    assert "The ban of 203.0.113.7 is lifted; sipd answers it again within a second." in page
    assert [b.address for b in bans.active(db.connection(), time.time())] == ["203.0.113.8"]
    lifted = Ban.get(Ban.address == "203.0.113.7")
    assert lifted.lifted_by == ADMIN[0] and lifted.lifted_at is not None
    entry = AuditEntry.get(AuditEntry.action == "ban.lift")
    assert (entry.actor, entry.target, entry.source, entry.detail) == (
        ADMIN[0], "203.0.113.7", "192.0.2.44", "1 ban")


def test_lift_takes_any_spelling_of_the_address(admin_client):
    ban("203.0.113.7")
    admin_client.post("/security/bans/lift", data={"address": "::ffff:203.0.113.7"})
    assert bans.active(db.connection(), time.time()) == []


@pytest.mark.parametrize(("address", "message"), [
    ("203.0.113.99", "203.0.113.99 is not banned (any more)."),
    ("not-an-address", "Nothing lifted: &#39;not-an-address&#39; is not an IP address."),
    ("", "Nothing lifted: the form was incomplete."),
])
def test_lift_what_is_not_banned(admin_client, address, message):
    ban("203.0.113.7")
    page = admin_client.post("/security/bans/lift", data={"address": address},
                             follow_redirects=True).data.decode()
    assert message in page
    assert len(bans.active(db.connection(), time.time())) == 1
    assert AuditEntry.select().where(AuditEntry.action == "ban.lift").count() == 0


def test_viewer_sees_bans_but_cannot_lift(client, auth):
    ban("203.0.113.7")
    auth.login_viewer()
    page = client.get("/security/bans").data.decode()
    assert "203.0.113.7" in page
    assert "/security/bans/lift" not in page and ">Lift<" not in page
    assert client.post("/security/bans/lift", data={"address": "203.0.113.7"}).status_code == 403
    assert len(bans.active(db.connection(), time.time())) == 1


def test_lift_needs_a_login_and_the_csrf_token(tmp_path):
    app = make_app(tmp_path, WTF_CSRF_ENABLED=True)
    client = app.test_client()
    ban("203.0.113.7")
    response = client.post("/security/bans/lift", data={"address": "203.0.113.7"})
    assert response.status_code in (302, 400)
    token = csrf_token(client.get("/login").data.decode())
    client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": token})
    assert client.post("/security/bans/lift", data={"address": "203.0.113.7"}).status_code == 400
    assert len(bans.active(db.connection(), time.time())) == 1
    token = csrf_token(client.get("/security/bans").data.decode())
    client.post("/security/bans/lift", data={"address": "203.0.113.7", "csrf_token": token})
    assert bans.active(db.connection(), time.time()) == []
    db.close()


def test_ban_reasons_are_escaped(admin_client):
    ban("203.0.113.7", reason="scanner User-Agent <script>alert(1)</script>")
    page = admin_client.get("/security/bans").data.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page

"""Registrations in the panel: unreachable bindings shown as such (sipd's qualifier
writes binding.unreachable_since), and dropping one by hand (admins only, CSRF,
audited), on rows written as sipd writes them."""

import time

from panel_testing import ADMIN, csrf_token, make_app

from core.models import AuditEntry, Binding, db


def two_phones(rows):
    extension = rows.extension("1001", name="Front desk")
    alive = rows.binding(extension, contact="sip:1001@192.0.2.10:5062", source_port=5062)
    dead = rows.binding(extension, contact="sip:1001@192.0.2.10:5070", source_port=5070,
                        user_agent="Softphone/2.0", unreachable_since=time.time() - 600)
    return extension, alive, dead


def row_of(page: str, contact: str) -> str:
    return next(row for row in page.split("<tr") if contact in row)


def test_unreachable_binding_is_shown_on_both_pages(admin_client, rows):
    _, alive, dead = two_phones(rows)
    page = admin_client.get("/registrations/").data.decode()
    assert "unreachable" in row_of(page, dead.contact)
    assert "unreachable" not in row_of(page, alive.contact)
    page = admin_client.get("/extensions/1001").data.decode()
    assert "unreachable" in row_of(page, dead.contact)
    assert "unreachable" not in row_of(page, alive.contact)
    assert "1 unreachable" in page  # next to "Registered ×2"
    listing = admin_client.get("/extensions/").data.decode()
    assert "1 unreachable" in row_of(listing, 'id="ext-1001"')


def test_all_unreachable_is_not_called_registered(admin_client, rows):
    extension = rows.extension("1001")
    rows.binding(extension, unreachable_since=time.time() - 5)
    listing = admin_client.get("/extensions/").data.decode()
    row = row_of(listing, 'id="ext-1001"')
    assert "Unreachable" in row and "Registered" not in row


def test_admin_drops_one_registration(admin_client, rows):
    _, alive, dead = two_phones(rows)
    page = admin_client.get("/registrations/").data.decode()
    assert f'value="{dead.id}"' in row_of(page, dead.contact)
    response = admin_client.post("/registrations/drop", data={"binding": dead.id},
                                 follow_redirects=True)
    assert response.status_code == 200
    assert "Dropped the registration of 1001 (sip:1001@192.0.2.10:5070)" in response.data.decode()
    assert [b.id for b in Binding.select()] == [alive.id]
    entry = AuditEntry.get(AuditEntry.action == "registration.drop")
    assert (entry.actor, entry.target) == (ADMIN[0], "1001")
    assert entry.detail == "sip:1001@192.0.2.10:5070 from 192.0.2.10:5070/UDP"
    # Twice: nothing to drop, said so, nothing else touched.
    again = admin_client.post("/registrations/drop", data={"binding": dead.id},
                              follow_redirects=True).data.decode()
    assert "gone already" in again
    assert Binding.select().count() == 1


def test_bad_form_drops_nothing(admin_client, rows):
    two_phones(rows)
    for data in ({}, {"binding": "x"}, {"binding": "0"}):
        page = admin_client.post("/registrations/drop", data=data,
                                 follow_redirects=True).data.decode()
        assert "Nothing dropped: the form was incomplete." in page
    assert Binding.select().count() == 2


def test_viewer_sees_registrations_but_cannot_drop(client, auth, rows):
    _, _, dead = two_phones(rows)
    auth.login_viewer()
    page = client.get("/registrations/").data.decode()
    assert dead.contact in page
    assert "/registrations/drop" not in page and ">Drop<" not in page
    assert client.post("/registrations/drop", data={"binding": dead.id}).status_code == 403
    assert Binding.select().count() == 2
    assert AuditEntry.select().where(AuditEntry.action == "registration.drop").count() == 0


def test_drop_needs_a_login_and_the_csrf_token(tmp_path):
    app = make_app(tmp_path, WTF_CSRF_ENABLED=True)
    client = app.test_client()
    from panel_testing import Rows

    with db.connection_context():
        _, _, dead = two_phones(Rows())
    response = client.post("/registrations/drop", data={"binding": dead.id})
    assert response.status_code in (302, 400)
    token = csrf_token(client.get("/login").data.decode())
    client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": token})
    assert client.post("/registrations/drop", data={"binding": dead.id}).status_code == 400
    with db.connection_context():
        assert Binding.select().count() == 2
    token = csrf_token(client.get("/registrations/").data.decode())
    client.post("/registrations/drop", data={"binding": dead.id, "csrf_token": token})
    with db.connection_context():
        assert Binding.select().count() == 1


# -- the same from the command line (pbxctl reg rm, pbxctl status) ---------------------------


def test_pbxctl_status_marks_unreachable(app, rows, pbxctl):
    _, alive, dead = two_phones(rows)
    status, out, _ = pbxctl("status")
    assert status == 0
    assert "Unreachable: 1 bindings" in out
    line_dead = next(line for line in out.splitlines() if dead.contact in line)
    line_alive = next(line for line in out.splitlines() if f"{alive.contact} " in line)
    assert "UNREACHABLE for 10 min" in line_dead
    assert "UNREACHABLE" not in line_alive


def test_pbxctl_reg_rm_one_contact_then_all(app, rows, pbxctl):
    _, alive, dead = two_phones(rows)
    status, out, err = pbxctl("reg", "rm", "1001",
                              "--contact", dead.contact)
    assert (status, err) == (0, "")
    assert out == f"Registration of 1001 dropped: {dead.contact} from 192.0.2.10:5070/UDP\n"
    db.connect(reuse_if_open=True)
    assert [b.id for b in Binding.select()] == [alive.id]
    entry = AuditEntry.get(AuditEntry.action == "registration.drop")
    assert entry.actor.startswith("cli:") and entry.target == "1001"

    status, _, err = pbxctl("reg", "rm", "1001",
                            "--contact", dead.contact)
    assert status == 1
    assert err == f"pbxctl: extension 1001 has no registration with contact {dead.contact}\n"

    rows.binding(rows.extension("1002"), contact="sip:1002@192.0.2.11:5062")
    status, out, _ = pbxctl("reg", "rm", "1001", "--all")
    assert status == 0 and out.count("dropped") == 1
    db.connect(reuse_if_open=True)
    assert [b.contact for b in Binding.select()] == ["sip:1002@192.0.2.11:5062"]
    status, _, err = pbxctl("reg", "rm", "1001", "--all")
    assert (status, err) == (1, "pbxctl: extension 1001 is not registered\n")
    status, _, err = pbxctl("reg", "rm", "9999", "--all")
    assert (status, err) == (1, "pbxctl: no extension 9999\n")

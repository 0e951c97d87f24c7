"""Trunks and outside calls in the panel (issue 12 items 3, 4 and 6): trunks with a
write-only password, inbound and outbound routes, the toll-fraud page with its one-click
unblock (CSRF), the policy, an extension's permission and limits, each trunk's state on
the dashboard. Each change audited; what core refuses is the form's error; viewers look.

A real temporary database per test (conftest.py); what is written is read back through
the models sipd reads.
"""

from __future__ import annotations

import re
import time
from html import unescape

import pytest
from panel_testing import ADMIN, csrf_token, make_app

from core import outbound, trunks
from core.models import (
    AuditEntry,
    Extension,
    FraudEvent,
    InboundRoute,
    OutboundPolicy,
    OutboundRoute,
    Trunk,
    TrunkState,
    db,
)

SECRET = "pr0vider-Secret"


def audit_rows(prefix):
    return [(e.action, e.target, e.detail) for e in AuditEntry.select()
            .where(AuditEntry.action.startswith(prefix)).order_by(AuditEntry.id)]


def form_errors(page: str) -> list[str]:
    return [unescape(re.sub(r"\s+", " ", m)) for m in re.findall(
        r'<div class="flash error" role="alert">([^<]*)</div>', page)]


def field_errors(page: str) -> list[str]:
    return [unescape(m) for m in re.findall(r'<p class="error">([^<]*)</p>', page)]


def trunk_form(**values):
    data = {"name": "acme", "host": "127.0.0.1:5080", "transport": "udp", "register": "y",
            "username": "office", "password": SECRET, "match": "", "caller_id": "",
            "caller_id_header": "from", "max_calls": "0", "keepalive_interval": "30"}
    data.update(values)
    return {k: v for k, v in data.items() if v is not None}


def route_form(name="national", patterns="9|0XXXXXXXX", rows=(("1", "acme"),), **values):
    data = {"name": name, "patterns": patterns, "caller_id": "", "position": ""}
    for index, (position, trunk) in enumerate(rows):
        data[f"trunks-{index}-position"] = position
        data[f"trunks-{index}-trunk"] = trunk
    data.update(values)
    return data


@pytest.fixture
def office(rows):
    rows.extension("1001", name="Alice")
    rows.extension("1002", name="Bob")
    trunks.create_trunk("acme", "127.0.0.1:5080", username="office", password=SECRET,
                        register=True)
    trunks.create_trunk("backup", "127.0.0.2", match="127.0.0.2")


# -- trunks ---------------------------------------------------------------------------------


def test_menu_and_empty_list(admin_client):
    page = admin_client.get("/trunks/").data.decode()
    assert '<a href="/trunks/" aria-current="page">Trunks</a>' in page
    assert "No trunks yet." in page and 'href="/trunks/new"' in page


def test_create_a_trunk_the_password_is_never_shown_again(admin_client):
    response = admin_client.post("/trunks/new", data=trunk_form())
    assert response.status_code == 302
    trunk = Trunk.get(Trunk.name == "acme")
    assert (trunk.host, trunk.port, trunk.register, trunk.password) == (
        "127.0.0.1", 5080, True, SECRET)
    (entry,) = audit_rows("trunk.")
    assert entry[:2] == ("trunk.create", "acme") and SECRET not in entry[2]
    listing = admin_client.get("/trunks/").data.decode()
    assert 'id="trunk-acme"' in listing and "password set" in listing and SECRET not in listing
    edit = admin_client.get("/trunks/acme/edit").data.decode()
    assert SECRET not in edit and "Leave blank to keep it" in edit
    assert re.search(r'<input[^>]*name="password"[^>]*type="password"[^>]*value=""', edit)


def test_edit_blank_keeps_the_password_a_new_one_replaces_it_and_it_can_be_removed(
        admin_client, office):
    assert admin_client.post("/trunks/acme/edit", data=trunk_form(
        password="", host="127.0.0.1:5090")).status_code == 302
    trunk = Trunk.get(Trunk.name == "acme")
    assert (trunk.port, trunk.password) == (5090, SECRET)
    assert admin_client.post("/trunks/acme/edit", data=trunk_form(
        password="n3w-secret")).status_code == 302
    assert Trunk.get(Trunk.name == "acme").password == "n3w-secret"
    assert admin_client.post("/trunks/acme/edit", data=trunk_form(
        password="", register=None, match="127.0.0.1", clear_password="y")).status_code == 302
    trunk = Trunk.get(Trunk.name == "acme")
    assert (trunk.password, trunk.kind) == ("", "ip")
    details = " ".join(d for _, _, d in audit_rows("trunk.edit"))
    assert SECRET not in details and "n3w-secret" not in details


@pytest.mark.parametrize(("values", "words"), [
    ({"host": "bad_host!"}, "Bad host 'bad_host!'."),
    ({"host": "127.0.0.1:70000"}, "Port must be 1 to 65535"),
    ({"match": "300.1.1.1"}, "Bad address or network '300.1.1.1'."),
    ({"username": "", "register": "y"}, "A trunk that registers needs a username."),
    ({"caller_id": "12ab"}, "Caller ID must be digits"),
    ({"name": "bad name"}, "Trunk name 'bad name' must be"),
])
def test_trunk_form_errors_write_nothing(admin_client, values, words):
    page = admin_client.post("/trunks/new", data=trunk_form(**values)).data.decode()
    assert any(words in e for e in form_errors(page) + field_errors(page)), page
    assert SECRET not in page
    assert Trunk.select().count() == 0 and audit_rows("trunk.") == []


def test_delete_a_trunk_after_confirming_names_what_it_takes(admin_client, office):
    outbound.create_outbound("national", ["backup"], ["0X."])
    outbound.create_inbound("5551234", "1001", "backup")
    page = admin_client.get("/trunks/backup/delete").data.decode()
    assert "national" in page and "5551234" in page
    response = admin_client.post("/trunks/backup/delete", follow_redirects=True)
    page = response.data.decode()
    assert "Trunk backup deleted." in page and "national" in page
    assert Trunk.get_or_none(Trunk.name == "backup") is None
    assert InboundRoute.select().count() == 0
    assert audit_rows("trunk.delete") == [("trunk.delete", "backup", "")]


def test_list_shows_each_trunks_state(admin_client, office):
    acme, backup = Trunk.get(Trunk.name == "acme"), Trunk.get(Trunk.name == "backup")
    TrunkState.create(trunk=acme, status="failed", last_code=403, reason="Forbidden")
    TrunkState.create(trunk=backup, status="up", reachable=False, last_code=None,
                      reason="no response from 127.0.0.2:5060 (udp)")
    page = admin_client.get("/trunks/").data.decode()
    row = page[page.index('id="trunk-acme"'):page.index('id="trunk-backup"')]
    assert 'data-state="failed"' in row and "403" in row and "Forbidden" in row
    assert 'data-state="down"' in page[page.index('id="trunk-backup"'):]


def row_of(page: str, name: str) -> str:
    start = page.index(f'id="trunk-{name}"')
    return page[start:page.index("</tr>", start)]


def test_disable_and_enable_a_trunk_from_the_list(admin_client, office):
    row = row_of(admin_client.get("/trunks/").data.decode(), "acme")
    assert 'action="/trunks/acme/disable"' in row and ">Disable</button>" in row
    page = admin_client.post("/trunks/acme/disable", follow_redirects=True).data.decode()
    assert "Trunk acme is disabled: no registration, no calls out or in through it." in page
    assert Trunk.get(Trunk.name == "acme").enabled is False
    assert Trunk.get(Trunk.name == "backup").enabled is True
    row = row_of(page, "acme")
    assert 'data-state="disabled"' in row and 'action="/trunks/acme/enable"' in row
    # Once more changes nothing (a second click, a form resent): no second audit row.
    admin_client.post("/trunks/acme/disable")
    page = admin_client.post("/trunks/acme/enable", follow_redirects=True).data.decode()
    assert "Trunk acme is enabled." in page and Trunk.get(Trunk.name == "acme").enabled
    assert 'action="/trunks/acme/disable"' in row_of(page, "acme")
    assert audit_rows("trunk.") == [("trunk.disable", "acme", ""), ("trunk.enable", "acme", "")]
    assert admin_client.post("/trunks/nosuch/disable").status_code == 404


def test_the_toggle_is_a_post_with_csrf(tmp_path):
    from panel_testing import Rows

    app = make_app(tmp_path, WTF_CSRF_ENABLED=True)
    client = app.test_client()
    token = csrf_token(client.get("/login").data.decode())
    client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": token})
    Rows()
    trunks.create_trunk("acme", "127.0.0.1:5080", username="office", password=SECRET,
                        register=True)
    assert client.post("/trunks/acme/disable").status_code == 400
    assert Trunk.get(Trunk.name == "acme").enabled is True
    form = re.search(r'<form method="post" action="/trunks/acme/disable"[^>]*>(.*?)</form>',
                     client.get("/trunks/").data.decode(), re.S).group(1)
    client.post("/trunks/acme/disable", data={"csrf_token": csrf_token(form)})
    assert Trunk.get(Trunk.name == "acme").enabled is False
    db.close()


def test_disable_in_uzbek_and_russian(admin_client, office):
    for language, words in (("uz", "acme trank oʻchirib qoʻyildi"), ("ru", "Транк acme отключён")):
        admin_client.post("/account/language", data={"language": language})
        admin_client.post("/trunks/acme/enable")
        page = admin_client.post("/trunks/acme/disable", follow_redirects=True).data.decode()
        assert words in page, page


def test_viewers_see_but_cannot_change(client, auth, office):
    auth.login_viewer()
    page = client.get("/trunks/").data.decode()
    assert 'id="trunk-acme"' in page and "/trunks/new" not in page
    for url in ("/trunks/new", "/trunks/acme/edit", "/trunks/acme/delete", "/trunks/inbound/new",
                "/trunks/outbound/new", "/trunks/policy"):
        assert client.get(url).status_code == 403, url
    assert client.post("/trunks/acme/delete").status_code == 403
    assert client.post("/trunks/acme/disable").status_code == 403
    assert Trunk.select().count() == 2 and Trunk.get(Trunk.name == "acme").enabled
    assert "/trunks/acme/disable" not in page


# -- inbound --------------------------------------------------------------------------------


def test_inbound_create_edit_delete(admin_client, office):
    page = admin_client.get("/trunks/inbound/new").data.decode()
    assert '<option value="">Any trunk</option>' in page and '<option value="acme">' in page
    response = admin_client.post("/trunks/inbound/new", data={
        "did": "998712001122", "destination": "1001", "trunk": ""})
    assert response.status_code == 302
    route = InboundRoute.get()
    assert (route.did, route.destination, route.trunk_id) == ("998712001122", "1001", None)
    page = admin_client.get("/trunks/inbound/").data.decode()
    assert "998712001122" in page and "Alice" in page and "any trunk" in page
    assert admin_client.post(f"/trunks/inbound/{route.id}/edit", data={
        "did": "998712001122", "destination": "1002", "trunk": "acme"}).status_code == 302
    route = InboundRoute.get()
    assert (route.destination, route.trunk.name) == ("1002", "acme")
    assert admin_client.post(f"/trunks/inbound/{route.id}/delete").status_code == 302
    assert InboundRoute.select().count() == 0
    assert [a[0] for a in audit_rows("inbound.")] == [
        "inbound.create", "inbound.edit", "inbound.delete"]


def test_routes_record_their_calls_when_the_box_is_ticked(admin_client, office):
    assert admin_client.post("/trunks/inbound/new", data={
        "did": "998712001122", "destination": "1001", "trunk": "", "record": "y"}
    ).status_code == 302
    route = InboundRoute.get()
    assert route.record
    assert "recorded" in admin_client.get("/trunks/inbound/").data.decode()
    edit = admin_client.get(f"/trunks/inbound/{route.id}/edit").data.decode()
    assert re.search(r'<input[^>]*checked[^>]*name="record"|<input[^>]*name="record"[^>]*checked',
                     edit), edit
    # An unticked box is a route that no longer records.
    assert admin_client.post(f"/trunks/inbound/{route.id}/edit", data={
        "did": "998712001122", "destination": "1001", "trunk": ""}).status_code == 302
    assert not InboundRoute.get().record
    assert admin_client.post("/trunks/outbound/new", data=route_form(record="y")
                             ).status_code == 302
    assert OutboundRoute.get().record
    assert "recorded" in admin_client.get("/trunks/outbound/").data.decode()
    assert audit_rows("outbound.create")[0][2].endswith(", recorded")


@pytest.mark.parametrize(("data", "words"), [
    ({"did": "abc", "destination": "1001"}, "DID 'abc' must be 1 to 31 digits"),
    ({"did": "5551234", "destination": "1999"}, "1999 is no extension or ring group, and no outbound route takes it"),
    ({"did": "5551234", "destination": "1001", "trunk": "nope"}, "No trunk nope."),
])
def test_inbound_form_errors(admin_client, office, data, words):
    page = admin_client.post("/trunks/inbound/new", data=data).data.decode()
    assert any(words in e for e in form_errors(page) + field_errors(page)), page
    assert InboundRoute.select().count() == 0


# -- outbound -------------------------------------------------------------------------------


def test_outbound_create_with_trunks_in_position_order_then_edit_and_delete(
        admin_client, office):
    page = admin_client.get("/trunks/outbound/new").data.decode()
    # One row per trunk, each a choice of every trunk.
    assert page.count('class="trunk"') == 2 and '<option value="backup">' in page
    response = admin_client.post("/trunks/outbound/new", data=route_form(
        patterns="9|0XXXXXXXX\r\n998+|XXXXXXXXX\r\n", rows=(("2", "acme"), ("1", "backup")),
        caller_id="+998712001122"))
    assert response.status_code == 302
    route = OutboundRoute.get()
    assert route.trunk_names() == ["backup", "acme"]
    assert route.pattern_list() == ["9|0XXXXXXXX", "998+|XXXXXXXXX"]
    assert route.caller_id == "+998712001122" and not route.emergency
    listing = admin_client.get("/trunks/outbound/").data.decode()
    assert "9|0XXXXXXXX" in listing and 'id="outbound-national"' in listing
    edit = admin_client.get("/trunks/outbound/national/edit").data.decode()
    first = edit[edit.index('name="trunks-0-trunk"'):edit.index('name="trunks-1-trunk"')]
    assert '<option selected value="backup">' in first
    assert admin_client.post("/trunks/outbound/national/edit", data=route_form(
        name="emergency", patterns="112", rows=(("1", "acme"), ("2", "")),
        emergency="y")).status_code == 302
    route = OutboundRoute.get()
    assert (route.name, route.trunk_names(), route.emergency) == ("emergency", ["acme"], True)
    assert admin_client.post("/trunks/outbound/emergency/delete").status_code == 302
    assert OutboundRoute.select().count() == 0
    assert [a[0] for a in audit_rows("outbound.")] == [
        "outbound.create", "outbound.edit", "outbound.delete"]


@pytest.mark.parametrize(("values", "words"), [
    ({"patterns": "9|0XX[X"}, "is not closed"),
    ({"patterns": ""}, "An outbound route needs at least one dial pattern."),
    ({"rows": (("1", ""),)}, "An outbound route needs at least one trunk."),
    ({"rows": (("1", "acme"), ("2", "acme"))}, "Trunk acme is given twice."),
    ({"name": "a b"}, "Route name 'a b' must be"),
])
def test_outbound_form_errors(admin_client, office, values, words):
    page = admin_client.post("/trunks/outbound/new", data=route_form(**values)).data.decode()
    assert any(words in e for e in form_errors(page) + field_errors(page)), page
    assert OutboundRoute.select().count() == 0


def test_a_pattern_error_in_russian(admin_client, office):
    admin_client.post("/account/language", data={"language": "ru"})
    page = admin_client.post("/trunks/outbound/new",
                             data=route_form(patterns="9|0XX[X")).data.decode()
    assert any("не закрыта" in e for e in field_errors(page)), page


# -- toll fraud -----------------------------------------------------------------------------


def block(number, reason="31 calls in an hour (limit 30)"):
    Extension.update(outbound_blocked_at=time.time(), outbound_blocked_reason=reason).where(
        Extension.number == number).execute()


def test_fraud_page_shows_events_blocks_and_the_policy(admin_client, office):
    FraudEvent.create(extension="1002", number="0037112345", rule="permission",
                      detail="international calls not allowed for 1002")
    block("1001")
    page = admin_client.get("/trunks/fraud").data.decode()
    assert 'data-rule="permission"' in page and "0037112345" in page and "Bob" in page
    assert 'id="blocked-1001"' in page and "31 calls in an hour (limit 30)" in page
    assert "not set: no international call is allowed" in page
    dashboard = admin_client.get("/").data.decode()
    assert 'id="tile-blocked"' in dashboard


def test_the_extension_list_marks_an_extension_the_hourly_limit_blocked(admin_client, office):
    block("1001")
    page = admin_client.get("/extensions/").data.decode()
    start = page.index('id="ext-1001"')
    row = page[start:page.index("</tr>", start)]
    assert 'data-blocked="outbound"' in row and "outside calls blocked" in row
    assert 'href="/trunks/extension/1001"' in row  # where it is unblocked
    assert "31 calls in an hour (limit 30)" in unescape(row)
    start = page.index('id="ext-1002"')
    assert "data-blocked" not in page[start:page.index("</tr>", start)]
    for language, words in (("uz", "tashqi qoʻngʻiroqlar bloklangan"),
                            ("ru", "внешние звонки заблокированы")):
        admin_client.post("/account/language", data={"language": language})
        assert words in admin_client.get("/extensions/").data.decode()


def test_unblock_is_one_post_with_csrf(tmp_path):
    from panel_testing import Rows

    app = make_app(tmp_path, WTF_CSRF_ENABLED=True)
    client = app.test_client()
    token = csrf_token(client.get("/login").data.decode())
    client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": token})
    Rows().extension("1001")
    block("1001")
    assert client.post("/trunks/fraud/unblock/1001").status_code == 400
    assert Extension.by_number("1001").outbound_blocked_at is not None
    page = client.get("/trunks/fraud").data.decode()
    form = re.search(r'<form method="post" action="/trunks/fraud/unblock/1001"[^>]*>(.*?)</form>',
                     page, re.S).group(1)
    response = client.post("/trunks/fraud/unblock/1001", data={"csrf_token": csrf_token(form)},
                           follow_redirects=True)
    assert "Extension 1001 may call out again." in response.data.decode()
    extension = Extension.by_number("1001")
    assert (extension.outbound_blocked_at, extension.outbound_blocked_reason) == (None, "")
    assert audit_rows("extension.unblock") == [
        ("extension.unblock", "1001", "was: 31 calls in an hour (limit 30)")]
    db.close()


def test_policy_form(admin_client):
    page = admin_client.get("/trunks/policy").data.decode()
    assert 'name="calls_per_hour"' in page and 'value="30"' in page
    response = admin_client.post("/trunks/policy", data={
        "home_country": "998", "allowed_countries": "+7, 44", "max_calls": "3",
        "calls_per_hour": "20", "minutes_per_hour": "90", "trunk_max_calls": "8"})
    assert response.status_code == 302
    policy = OutboundPolicy.current()
    assert (policy.home_country, policy.allowed_countries, policy.max_calls,
            policy.calls_per_hour, policy.minutes_per_hour, policy.trunk_max_calls) == (
        "998", "7,44", 3, 20, 90, 8)
    page = admin_client.post("/trunks/policy", data={
        "home_country": "99", "allowed_countries": "", "max_calls": "0",
        "calls_per_hour": "20", "minutes_per_hour": "90", "trunk_max_calls": "8"}).data.decode()
    errors = field_errors(page)
    assert any("'99' is not a country code" in e for e in errors), errors
    assert OutboundPolicy.current().home_country == "998"
    assert [a[0] for a in audit_rows("policy.")] == ["policy.edit"]


# -- an extension ---------------------------------------------------------------------------


def test_extension_edit_page_sets_the_permission(admin_client, office):
    page = admin_client.get("/extensions/1001/edit").data.decode()
    assert re.search(r'<input checked[^>]*value="national"|value="national"[^>]*checked', page)
    response = admin_client.post("/extensions/1001/edit", data={
        "name": "Alice", "enabled": "y", "max_calls": "4",
        "outbound_permission": "international"})
    assert response.status_code == 302
    assert Extension.by_number("1001").outbound_permission == "international"
    assert audit_rows("extension.permit") == [("extension.permit", "1001", "international")]
    # A form without the field (an older page) leaves it alone.
    admin_client.post("/extensions/1001/edit", data={"name": "Alice", "enabled": "y"})
    assert Extension.by_number("1001").outbound_permission == "international"
    show = admin_client.get("/extensions/1001").data.decode()
    assert 'id="outbound-permission"' in show and "international" in show


def test_extension_outbound_page_limits_caller_id_and_unblock(admin_client, office):
    block("1002")
    page = admin_client.get("/trunks/extension/1002").data.decode()
    assert 'id="blocked"' in page and "Empty: the policy's (2)." in unescape(page)
    response = admin_client.post("/trunks/extension/1002", data={
        "permission": "internal", "caller_id": "+998712001100", "max_calls": "1",
        "calls_per_hour": "", "minutes_per_hour": "30"})
    assert response.status_code == 302
    e = Extension.by_number("1002")
    assert (e.outbound_permission, e.outbound_caller_id, e.outbound_max_calls,
            e.outbound_calls_per_hour, e.outbound_minutes_per_hour) == (
        "internal", "+998712001100", 1, None, 30)
    assert [a[0] for a in audit_rows("extension.")] == ["extension.permit", "extension.outbound"]
    page = admin_client.post("/trunks/extension/1002", data={
        "permission": "national", "max_calls": "0"}).data.decode()
    assert field_errors(page) and Extension.by_number("1002").outbound_max_calls == 1
    response = admin_client.post("/trunks/fraud/unblock/1002", data={"back": "extension"})
    assert response.headers["Location"].endswith("/trunks/extension/1002")
    assert Extension.by_number("1002").outbound_blocked_at is None


# -- the dashboard --------------------------------------------------------------------------


def test_dashboard_shows_each_trunks_state(admin_client, office):
    page = admin_client.get("/").data.decode()
    assert 'id="trunk-states"' in page
    assert 'id="dash-trunk-acme"' in page and 'data-state="unknown"' in page
    TrunkState.create(trunk=Trunk.get(Trunk.name == "acme"), status="registered",
                      last_code=200, reason="OK")
    page = admin_client.get("/").data.decode()
    row = page[page.index('id="dash-trunk-acme"'):page.index('id="dash-trunk-backup"')]
    assert 'data-state="registered"' in row and "200" in row


def test_dashboard_without_trunks_says_how_to_add_one(admin_client):
    page = admin_client.get("/").data.decode()
    assert "No trunks: calls stay inside the office." in page

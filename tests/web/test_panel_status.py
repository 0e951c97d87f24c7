"""Registrations and failed logins: read-only pages over what sipd wrote."""

import time

from core.models import Extension


def test_registrations_empty(admin_client):
    response = admin_client.get("/registrations/")
    assert response.status_code == 200
    assert b"No phone is registered right now." in response.data


def test_registrations_list_every_live_binding(admin_client, rows):
    alice = rows.extension("1002", name="Alice")
    bob = rows.extension("201", name="Bob")
    rows.binding(alice, contact="sip:1002@198.51.100.20:5060", source_host="198.51.100.20",
                 source_port=5060, transport="UDP", user_agent="MicroSIP/3.21.3")
    rows.binding(alice, contact="sip:1002@198.51.100.21:5061;transport=tcp", call_id="b",
                 source_host="198.51.100.21", source_port=40001, transport="TCP",
                 user_agent="Zoiper rv2.10")
    rows.binding(bob, contact="sip:201@192.0.2.30:5060", user_agent="Linphone/5.2.5",
                 expires_at=time.time() + 3600)
    rows.binding(bob, contact="sip:201@192.0.2.99:5060", call_id="gone",
                 user_agent="Expired/1.0", expires_at=time.time() - 5)

    page = admin_client.get("/registrations/").data.decode()
    assert "3 live bindings" in page
    for text in ("sip:1002@198.51.100.20:5060", "198.51.100.21:40001", "TCP", "Zoiper rv2.10",
                 "sip:201@192.0.2.30:5060", "Linphone/5.2.5", "Alice", "Bob", "59 min"):
        assert text in page, text
    assert "Expired/1.0" not in page
    # Numeric order: 201 before 1002.
    assert page.index("sip:201@192.0.2.30") < page.index("sip:1002@198.51.100.20")


def test_failures_include_unknown_numbers(admin_client, rows):
    rows.extension("1002")
    rows.attempt("1002", reason="wrong password", source_host="203.0.113.7")
    rows.attempt("9999", reason="unknown extension", source_host="203.0.113.66",
                 user_agent="friendly-scanner")
    rows.attempt("1002", result="success", reason="", user_agent="Only/Success")
    rows.attempt("1002", result="challenge", reason="no credentials", user_agent="Only/Challenge")

    page = admin_client.get("/security/failures").data.decode()
    table = page[page.index('id="failures"'):]
    assert "wrong password" in table and "unknown extension" in table
    assert "friendly-scanner" in table and "203.0.113.66:48355" in table
    assert 'href="/extensions/1002"' in table
    assert "9999</span> <span class=\"tag\">no such extension</span>" in table
    assert 'href="/extensions/9999"' not in table
    assert "Only/Success" not in table and "Only/Challenge" not in table
    assert table.index("friendly-scanner") < table.index("wrong password")  # newest first


def test_failures_empty(admin_client):
    response = admin_client.get("/security/failures")
    assert response.status_code == 200
    assert b"No failed authentications recorded." in response.data


def test_a_deleted_extension_becomes_unknown(admin_client, rows):
    rows.extension("1002")
    rows.attempt("1002")
    Extension.delete().execute()
    assert b"no such extension" in admin_client.get("/security/failures").data

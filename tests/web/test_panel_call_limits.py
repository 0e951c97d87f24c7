"""The panel's side of issue 14, finding 4: an extension's call limit (the calls
it may be in at once) is shown, and set on its edit form, audited."""

from __future__ import annotations

import pytest

from core.models import AuditEntry, Extension


def test_the_limit_is_shown_and_filled_in(admin_client, rows):
    rows.extension("1002", name="Alice")
    assert Extension.by_number("1002").max_calls == 4  # the default, for every extension
    assert "at most 4" in admin_client.get("/extensions/1002").data.decode()
    page = admin_client.get("/extensions/1002/edit").data.decode()
    assert 'name="max_calls"' in page and 'value="4"' in page


def test_the_limit_is_saved_and_audited(admin_client, rows):
    rows.extension("1002", name="Alice")
    response = admin_client.post("/extensions/1002/edit",
                                 data={"name": "Alice", "enabled": "y", "max_calls": "2"})
    assert response.status_code == 302
    assert Extension.by_number("1002").max_calls == 2
    entry = AuditEntry.get(AuditEntry.action == "extension.edit")
    assert entry.detail == "call limit 4 -> 2"


def test_a_blank_limit_keeps_the_one_there_is(admin_client, rows):
    rows.extension("1002")
    admin_client.post("/extensions/1002/edit", data={"name": "", "enabled": "y", "max_calls": "3"})
    admin_client.post("/extensions/1002/edit", data={"name": "Bob", "enabled": "y",
                                                     "max_calls": ""})
    extension = Extension.by_number("1002")
    assert (extension.name, extension.max_calls) == ("Bob", 3)


@pytest.mark.parametrize("value, message", [
    ("0", "Call limit must be a whole number from 1 to 1000, got &#39;0&#39;."),
    ("1001", "Call limit must be a whole number from 1 to 1000, got &#39;1001&#39;."),
    ("-3", "Call limit must be a whole number from 1 to 1000, got &#39;-3&#39;."),
    ("four", "Not a valid integer value."),
])
def test_a_bad_limit_is_a_form_error_and_changes_nothing(admin_client, rows, value, message):
    rows.extension("1002", name="Alice")
    response = admin_client.post("/extensions/1002/edit",
                                 data={"name": "Changed", "enabled": "y", "max_calls": value})
    assert response.status_code == 200
    assert message in response.data.decode()
    extension = Extension.by_number("1002")
    assert (extension.name, extension.max_calls) == ("Alice", 4)

"""A trunk and an outbound route made in the panel, in real headless Chromium against the
panel as a process, and the trunk's state seen on the dashboard.

The admin opens Trunks from the menu, adds "acme" (registering, with a password),
opens its edit page and finds the password not there ("leave blank to keep it"),
then adds an outbound route "national" with a stripping pattern and the trunk, and
sees it listed. sipd's registration, written to TrunkState as sipd writes it, then
shows on the dashboard (the first page after logging in) as registered, 200 OK;
a failure with its reason likewise. Chromium or chromedriver missing is a failure,
never a skip.
"""

from __future__ import annotations

import time

import test_browser
from test_browser import (
    PHONE,
    assert_fits_a_phone,
    assert_no_console_errors,
    click_and_load,
    log_in,
    save_screenshot,
)

from core.models import OutboundRoute, Trunk, TrunkState, db

chromium = test_browser.chromium
browser = test_browser.browser
database = test_browser.database
panel = test_browser.panel
screenshots = test_browser.screenshots

SECRET = "pr0vider-Secret-7"


def test_add_a_trunk_and_an_outbound_route_and_see_the_state_on_the_dashboard(
        browser, panel, screenshots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    log_in(browser, panel)
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "Trunks"))
    assert "No trunks yet." in browser.page_source
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "New trunk"))
    browser.find_element(By.NAME, "name").send_keys("acme")
    browser.find_element(By.NAME, "host").send_keys("127.0.0.1:5080")
    browser.find_element(By.NAME, "register").click()
    browser.find_element(By.NAME, "username").send_keys("office")
    browser.find_element(By.NAME, "password").send_keys(SECRET)
    browser.find_element(By.NAME, "caller_id").send_keys("+998712001122")
    save_screenshot(browser, screenshots / "trunk-form-desktop.png")
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "input[value=Save]"))
    assert "Trunk acme created." in browser.page_source
    row = browser.find_element(By.ID, "trunk-acme")
    assert "registers as office" in row.text and "password set" in row.text
    assert SECRET not in browser.page_source

    # The password is write-only: the edit form does not carry it back.
    click_and_load(browser, row.find_element(By.LINK_TEXT, "Edit"))
    assert browser.find_element(By.NAME, "password").get_attribute("value") == ""
    assert "Leave blank to keep it" in browser.find_element(By.ID, "password-state").text
    assert SECRET not in browser.page_source
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "Cancel"))

    click_and_load(browser, browser.find_element(By.LINK_TEXT, "Outbound routes"))
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "New outbound route"))
    browser.find_element(By.NAME, "name").send_keys("national")
    browser.find_element(By.NAME, "patterns").send_keys("9|0XXXXXXXX\n998+|XXXXXXXXX")
    Select(browser.find_element(By.NAME, "trunks-0-trunk")).select_by_value("acme")
    save_screenshot(browser, screenshots / "outbound-form-desktop.png")
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "input[value=Save]"))
    assert "Outbound route national created." in browser.page_source
    row = browser.find_element(By.ID, "outbound-national")
    patterns = [c.text for c in row.find_elements(By.CSS_SELECTOR, "code.pattern")]
    assert patterns == ["9|0XXXXXXXX", "998+|XXXXXXXXX"]
    assert [li.text for li in row.find_elements(By.CSS_SELECTOR, "ol.trunks li")] == ["acme"]
    save_screenshot(browser, screenshots / "outbound-desktop.png")
    save_screenshot(browser, screenshots / "outbound-phone.png", PHONE)
    assert_fits_a_phone(browser)
    with db.connection_context():
        route = OutboundRoute.get(OutboundRoute.name == "national")
        assert route.trunk_names() == ["acme"]
        assert Trunk.get(Trunk.name == "acme").password == SECRET

    # Before sipd has tried the trunk, then as sipd writes it when registered.
    browser.get(panel.url + "/")
    state = browser.find_element(By.CSS_SELECTOR, "#dash-trunk-acme [data-state]")
    assert state.get_attribute("data-state") == "unknown"
    with db.connection_context():
        TrunkState.create(trunk=Trunk.get(Trunk.name == "acme"), status="registered",
                          last_code=200, reason="OK", registered_at=time.time(),
                          expires_at=time.time() + 3600)
    browser.refresh()
    row = browser.find_element(By.ID, "dash-trunk-acme")
    assert row.find_element(By.CSS_SELECTOR, "[data-state]").text == "registered"
    assert "200 OK" in row.text
    with db.connection_context():
        TrunkState.update(status="failed", last_code=403, reason="Forbidden (wrong password?)"
                          ).execute()
    browser.refresh()
    row = browser.find_element(By.ID, "dash-trunk-acme")
    assert row.find_element(By.CSS_SELECTOR, "[data-state]").get_attribute(
        "data-state") == "failed"
    assert "403 Forbidden (wrong password?)" in row.text
    save_screenshot(browser, screenshots / "dashboard-trunks-desktop.png")
    assert_no_console_errors(browser)

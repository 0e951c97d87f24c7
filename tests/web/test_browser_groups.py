"""A ring group made in the panel, in real headless Chromium against the panel as a process.

The admin opens Ring groups from the menu, creates 600 "Sales" (hunt) with three
members ordered by their position numbers (one in a row added with "More rows"),
and sees the group listed with its members in that order. Then a call ringing
the group, written to the database as sipd writes it, appears on the live calls
page (drawn by its script, which polls) with the group and the members ringing
now, and once answered with who answered. (Calling the group with real phones
and watching it ring is the end-to-end test that needs the B2BUA.)
Chromium or chromedriver missing is a failure, never a skip.
"""

from __future__ import annotations

import time

import pytest
import test_browser
from panel_testing import PanelProcess, Rows, free_tcp_port
from test_browser import (
    PHONE,
    assert_fits_a_phone,
    assert_no_console_errors,
    click_and_load,
    log_in,
    save_screenshot,
)

from core.models import Call, db

chromium = test_browser.chromium
browser = test_browser.browser
database = test_browser.database
screenshots = test_browser.screenshots


@pytest.fixture
def panel(database, tmp_path):
    with db.connection_context():
        for number, name in (("1001", "Alice"), ("1002", "Bob"), ("1003", "Carol")):
            Rows().extension(number, name=name)
    db.close()
    panel = PanelProcess(database, tmp_path, free_tcp_port()).start()
    yield panel
    assert panel.stop() == 0, panel.log()


def member_row(driver, index: int):
    from selenium.webdriver.common.by import By

    return (driver.find_element(By.NAME, f"members-{index}-position"),
            driver.find_element(By.NAME, f"members-{index}-extension"))


def fill(element, value: str) -> None:
    element.clear()
    element.send_keys(value)


def test_create_a_group_and_see_its_members_in_order(browser, panel, screenshots):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    log_in(browser, panel)
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "Ring groups"))
    assert "No ring groups yet." in browser.page_source
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "New ring group"))

    browser.find_element(By.NAME, "number").send_keys("600")
    browser.find_element(By.NAME, "name").send_keys("Sales")
    browser.find_element(By.CSS_SELECTOR, "input[name=strategy][value=hunt]").click()
    fill(browser.find_element(By.NAME, "member_time"), "10")
    # Typed in one order, numbered in another: the positions decide.
    position, extension = member_row(browser, 0)
    fill(position, "2")
    extension.send_keys("1003")
    position, extension = member_row(browser, 1)
    fill(position, "1")
    extension.send_keys("1001")
    # Three rows were not enough for what the admin has in mind: more, keeping what was typed.
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "input[value='More rows']"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "input.member")) == 6
    assert member_row(browser, 0)[1].get_attribute("value") == "1003"
    assert member_row(browser, 3)[0].get_attribute("value") == "4"
    member_row(browser, 3)[1].send_keys("1002")
    save_screenshot(browser, screenshots / "group-form-desktop.png")
    save_screenshot(browser, screenshots / "group-form-phone.png", PHONE)
    assert_fits_a_phone(browser)
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "input[value=Save]"))

    assert "Ring group 600 created." in browser.page_source
    assert [row.get_attribute("id") for row in browser.find_elements(
        By.CSS_SELECTOR, "#members tbody tr")] == ["member-1001", "member-1003", "member-1002"]

    click_and_load(browser, browser.find_element(By.LINK_TEXT, "Ring groups"))
    row = browser.find_element(By.ID, "group-600")
    listed = [li.text for li in row.find_elements(By.CSS_SELECTOR, "ol.members li")]
    assert listed == ["1001 Alice", "1003 Carol", "1002 Bob"]
    assert "hunt, 10 s each" in row.find_element(By.CSS_SELECTOR,
                                                 "td[data-label=Strategy]").text
    assert row.find_element(By.CSS_SELECTOR, "td[data-label=Name]").text == "Sales"
    save_screenshot(browser, screenshots / "groups-desktop.png")
    save_screenshot(browser, screenshots / "groups-phone.png", PHONE)
    assert_fits_a_phone(browser)

    # A call ringing the group, as the page's script draws it from its poll.
    browser.get(panel.url + "/calls/active")
    assert browser.find_element(By.ID, "no-calls").is_displayed()
    wait = WebDriverWait(browser, 6, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,))
    with db.connection_context():
        call = Rows().call("1002", "600", live=True, state="ringing", answered_at=None,
                           started_at=time.time(), via_group="600", ringing="1001,1003")
    callee = f"#live-{call.id} td[data-label=Callee]"
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, callee))
    text = browser.find_element(By.CSS_SELECTOR, callee).text
    assert text.startswith("600 Sales ring group"), text
    assert "ringing now: 1001 Alice, 1003 Carol" in text, text

    with db.connection_context():
        Call.update(state="answered", answered_at=time.time(), ringing="",
                    answered_by="1003").where(Call.id == call.id).execute()
    wait.until(lambda d: "answered by" in d.find_element(By.CSS_SELECTOR, callee).text)
    text = browser.find_element(By.CSS_SELECTOR, callee).text
    assert "answered by 1003 Carol" in text and "ringing now" not in text, text
    save_screenshot(browser, screenshots / "live-group-call.png")
    assert_no_console_errors(browser)

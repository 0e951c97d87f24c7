"""A ring group made in the panel and called by a real phone, watched ringing on the
live calls page, in real headless Chromium (issue 11, "Show").

A real sipd and the panel as a process share one database. The admin creates
600 "Sales" (ringall: 1002 and 1003) in the panel; 1002 and 1003 register and
ring (sipp, callee_no_answer.xml); 1001 calls 600 (sipp, caller_cancel.xml:
it gives up after a few seconds of ringing). The live calls page, which polls by
itself, shows the call to the group with both members ringing now; when the
caller gives up, both phones are CANCELled, the page empties, and the history
shows the call through the group. Chromium, chromedriver or sipp missing is a
failure, never a skip.
"""

from __future__ import annotations

import pytest
import test_browser
from test_browser import assert_no_console_errors, click_and_load, log_in, save_screenshot
from test_browser_calls import history_row, live_rows, sipd_and_panel, wait_until

from tests.sip import callkit as ck

chromium = test_browser.chromium
browser = test_browser.browser
RING_MS = 7000  # how long the caller lets the group ring before it hangs up


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "WORK_ROOT", tmp_path)


@pytest.fixture
def pbx(tmp_path):
    with sipd_and_panel(tmp_path, ("1001", "1002", "1003"), PBX_RING_TIMEOUT="20") as both:
        yield both


def test_a_group_made_in_the_panel_rings_its_members_on_the_live_page(browser, pbx,
                                                                        tmp_path):
    from selenium.webdriver.common.by import By

    server, panel = pbx
    log_in(browser, panel)
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "Ring groups"))
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "New ring group"))
    browser.find_element(By.NAME, "number").send_keys("600")
    browser.find_element(By.NAME, "name").send_keys("Sales")
    for index, number in enumerate(("1002", "1003")):
        browser.find_element(By.NAME, f"members-{index}-extension").send_keys(number)
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "input[value=Save]"))
    assert "Ring group 600 created." in browser.page_source

    ringing = [ck.callee(server.address, number, "callee_no_answer.xml", timeout=40)
               for number in ("1002", "1003")]
    browser.get(panel.url + "/calls/active")
    caller = ck.caller(server.address, "1001", "600", "caller_cancel.xml",
                       duration_ms=RING_MS, timeout=40)

    def story() -> str:
        return ck.explain(caller, *ringing, server=server)

    def ringing_group(driver):
        for row in live_rows(driver):
            if row["callee"] == "600" and "ringing now: 1002, 1003" in row["text"]:
                return row
        return False

    row = wait_until(browser, ringing_group, RING_MS / 1000 - 1,
                     "the call to 600 ringing 1002 and 1003 on the live page", story)
    assert row["badge"] == "ringing" and "ring group" in row["text"], row
    call_id = int(row["id"].removeprefix("live-"))
    save_screenshot(browser, tmp_path / "live-group-ringing.png")

    ck.finish(caller, *ringing, server=server, timeout=40)
    for phone in ringing:
        assert phone.requests() == ["INVITE", "CANCEL", "ACK"], phone.flow()
    wait_until(browser, lambda d: d.find_element(By.ID, "no-calls").is_displayed(), 6,
               "the live page emptied after the caller gave up", story)

    browser.get(panel.url + "/calls/")
    cells = history_row(browser, call_id)
    assert cells["Outcome"] == "CANCELLED", cells
    assert "600" in cells["Callee"] and "Sales" in cells["Callee"], cells
    assert_no_console_errors(browser)

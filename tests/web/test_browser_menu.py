"""The panel's menu at phone width, in real headless Chromium against the panel as a process.

On a 390 px phone the menu used to scroll sideways inside the top bar, so
Bans, Audit log and Settings were past the edge with nothing to say so. Every
entry must now be on the screen, none covered, with nothing to scroll
sideways, on every page; one is tapped to show it works. A screenshot goes to
$PBX_SCREENSHOTS if set (docs/screenshots/menu-phone.png is the last one), else
a temporary directory. Chromium or chromedriver missing is a failure, never a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import test_browser
from panel_testing import ADMIN, REALM, PanelProcess, free_tcp_port
from test_browser import PHONE, assert_no_console_errors, click_and_load, log_in, save_screenshot

from core.accounts import create_admin
from core.config import load_settings
from core.database import connect
from core.models import db

chromium = test_browser.chromium
browser = test_browser.browser

PAGES = ["/", "/extensions/", "/groups/", "/calls/active", "/calls/", "/security/bans",
         "/security/audit", "/settings/"]
# Every entry, whatever else is added later (each must be in sight too).
SECTIONS = ["Dashboard", "Extensions", "Ring groups", "Registrations", "Live calls",
            "Call history", "Failed logins", "Bans", "Audit log", "Settings"]

# For each menu link: its text, its box, and whether the point at its middle is the
# link itself (not covered, not clipped away by a scrolling parent).
MENU_BOXES = """
const width = document.documentElement.clientWidth;
return [...document.querySelectorAll('nav.nav a')].map(a => {
  const box = a.getBoundingClientRect();
  const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
  return {text: a.textContent.trim(), left: box.left, right: box.right, top: box.top,
          bottom: box.bottom, width: width, height: window.innerHeight,
          reachable: hit !== null && (hit === a || a.contains(hit))};
});
"""


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "pbx.db"
    connect(load_settings({"PBX_DB": str(path), "PBX_REALM": REALM}))
    create_admin(*ADMIN)
    db.close()
    return path


@pytest.fixture
def screenshots(tmp_path) -> Path:
    directory = Path(os.environ.get("PBX_SCREENSHOTS") or tmp_path / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def menu_in_sight(driver, url: str, path: str) -> list[str]:
    """The menu's entries on `path`, each checked to be on the screen as it loads."""
    driver.get(url + path)
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{path}: the page is {overflow}px wider than the phone"
    nav_overflow = driver.execute_script(
        "const nav = document.querySelector('nav.nav');"
        "return nav.scrollWidth - nav.clientWidth")
    assert nav_overflow <= 0, f"{path}: the menu scrolls sideways by {nav_overflow}px"
    boxes = driver.execute_script(MENU_BOXES)
    for box in boxes:
        where = f"{path}: {box['text']!r} at {box['left']:.0f}-{box['right']:.0f} px"
        assert 0 <= box["left"] and box["right"] <= box["width"], where + " is off the screen"
        assert 0 <= box["top"] and box["bottom"] <= box["height"], where + " is below the fold"
        assert box["reachable"], where + " is covered or clipped"
    return [box["text"] for box in boxes]


def test_every_menu_entry_is_in_sight_on_a_phone(browser, database, tmp_path, screenshots):
    from selenium.webdriver.common.by import By

    panel = PanelProcess(database, tmp_path, free_tcp_port()).start()
    try:
        log_in(browser, panel)
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
        assert browser.execute_script("return document.documentElement.clientWidth") == 390
        for path in PAGES:
            entries = menu_in_sight(browser, panel.url, path)
            assert all(section in entries for section in SECTIONS), (path, entries)
        save_screenshot(browser, screenshots / "menu-phone.png", PHONE)

        # A tap on the last entry opens its page (it is a link under the finger).
        browser.get(panel.url + "/")
        click_and_load(browser, browser.find_element(By.LINK_TEXT, "Settings"))
        assert browser.current_url == panel.url + "/settings/"
        assert browser.find_element(
            By.CSS_SELECTOR, "nav.nav a[aria-current=page]").text == "Settings"

        # And at desktop width, as before.
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        assert set(SECTIONS) <= set(menu_in_sight(browser, panel.url, "/"))
        assert_no_console_errors(browser)
    finally:
        assert panel.stop() == 0, panel.log()

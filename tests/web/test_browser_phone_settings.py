"""In real headless Chromium: after creating an extension the admin sees the running sipd's
address and port, copies a field, and the QR code as the browser draws it decodes (zbarimg)
to a link that gives Linphone the account once. The panel and sipd are real processes on one
database; the CSP holds (no console errors) and the page fits a phone.
"""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request

import test_browser
from panel_testing import ADMIN
from test_browser import (
    PHONE,
    assert_fits_a_phone,
    assert_no_console_errors,
    click_and_load,
    save_screenshot,
)

from tests.support import Sipd, require_tool

# The fixtures of tests/web/test_browser.py: a Chromium, a panel process and its database.
chromium = test_browser.chromium
browser = test_browser.browser
database = test_browser.database
panel = test_browser.panel
screenshots = test_browser.screenshots


def test_phone_settings_from_the_running_sipd(browser, panel, database, tmp_path, screenshots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    zbarimg = require_tool("zbarimg")
    with Sipd(database, PBX_RUN_DIR=str(tmp_path / "sipd-run")) as sipd:
        browser.get(panel.url + "/extensions/new")
        browser.find_element(By.NAME, "username").send_keys(ADMIN[0])
        browser.find_element(By.NAME, "password").send_keys(ADMIN[1])
        click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "input[type=submit]"))
        browser.find_element(By.NAME, "number").send_keys("1003")
        browser.find_element(By.CSS_SELECTOR, "input[value=generate]").click()
        click_and_load(browser, browser.find_element(
            By.CSS_SELECTOR, "input[type=submit][value='Create extension']"))

        password = browser.find_element(By.ID, "shown-password").text
        settings = browser.find_element(By.ID, "softphone-settings").text
        assert f"SIP server\n127.0.0.1:{sipd.port}" in settings, settings
        assert f"Port\n{sipd.port}" in settings
        warning = browser.find_element(By.CLASS_NAME, "address-warning").text
        assert warning.startswith("127.0.0.1 is a loopback address")

        # A copy button answers (the clipboard itself is the browser's business).
        button = browser.find_element(By.CSS_SELECTOR, "#softphone-settings button[data-copy]")
        assert button.get_attribute("data-copy") == f"127.0.0.1:{sipd.port}"
        button.click()
        WebDriverWait(browser, 5).until(lambda _: button.text == "Copied")

        # The QR code as drawn on the screen decodes to the one-time link.
        qr = browser.find_element(By.CSS_SELECTOR, "#linphone-provisioning svg")
        assert qr.size["width"] >= 200
        browser.execute_script("arguments[0].scrollIntoView()", qr)
        (tmp_path / "qr.png").write_bytes(qr.screenshot_as_png)
        decoded = subprocess.run([zbarimg, "--quiet", "--raw", str(tmp_path / "qr.png")],
                                 capture_output=True, text=True, timeout=30)
        url = decoded.stdout.strip()
        assert url.startswith(panel.url + "/extensions/provision/"), decoded
        assert browser.find_element(By.ID, "linphone-url").text == url
        # The panel was opened at 127.0.0.1: a phone elsewhere could not open that link.
        link_warning = browser.find_element(By.ID, "link-warning").text
        assert link_warning.startswith("The phone opens this link itself, at 127.0.0.1,")

        save_screenshot(browser, screenshots / "phone-settings-desktop.png")
        save_screenshot(browser, screenshots / "phone-settings-phone.png", PHONE)
        assert_fits_a_phone(browser)
        assert_no_console_errors(browser)

        # The phone fetches it once.
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
        assert f'<entry name="passwd" overwrite="true">{password}</entry>' in body
        assert f"sip:127.0.0.1:{sipd.port};transport=udp" in body
        try:
            urllib.request.urlopen(url, timeout=10)
            raise AssertionError("the provisioning link worked twice")
        except urllib.error.HTTPError as error:
            assert error.code == 404

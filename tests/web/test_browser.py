"""The flow a person does, in real headless Chromium against the panel as a real process.

Log in, create an extension, read its password once, then register a phone
(sipp, against a real sipd on the same database) with that password and see
the extension listed as registered. Screenshots at desktop and phone width go
to a temporary directory, or to $PBX_SCREENSHOTS if set (to look at them).
Then what phones send (User-Agent, contact, display names, call reasons)
carrying markup is shown as text and runs nothing, and the live calls page
follows calls written to the database, polling, and hangs one up.
Chromium or chromedriver missing is a failure, never a skip.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import pytest
from panel_testing import ADMIN, REALM, FakeControl, PanelProcess, Rows, free_tcp_port

from core import phone_settings
from core.accounts import create_admin
from core.config import load_settings
from core.database import connect
from core.models import db
from tests.support import Sipd, free_port, run_sipp

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}


def require(path: str) -> str:
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise AssertionError(f"{path} is missing: apt-get install chromium chromium-driver "
                             "(make test does it)")
    return path


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    """One Chromium for the module: starting it is the slowest step of these tests."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    tmp_path = tmp_path_factory.mktemp("chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = require(CHROMIUM)
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-default-apps", "--disable-extensions",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1280,900",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=require(CHROMEDRIVER),
                      log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture
def browser(chromium):
    """The shared Chromium, as if new: blank page, no cookies, no console lines left over."""
    chromium.get("about:blank")
    chromium.execute_cdp_cmd("Network.clearBrowserCookies", {})
    chromium.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    chromium.get_log("browser")
    yield chromium
    chromium.get("about:blank")


@pytest.fixture
def screenshots(tmp_path) -> Path:
    directory = Path(os.environ.get("PBX_SCREENSHOTS") or tmp_path / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def database(tmp_path):
    """A database with one admin, closed again so only the servers hold it open."""
    path = tmp_path / "pbx.db"
    connect(load_settings({"PBX_DB": str(path), "PBX_REALM": REALM}))
    create_admin(*ADMIN)
    db.close()
    return path


@pytest.fixture
def panel(database, tmp_path):
    panel = PanelProcess(database, tmp_path, free_tcp_port()).start()
    yield panel
    assert panel.stop() == 0, panel.log()


def save_screenshot(driver, path: Path, device: dict | None = None) -> Path:
    """A whole-page PNG, at the desktop window or emulating a phone's screen."""
    if device:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", device)
    else:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    width = driver.execute_script("return document.documentElement.clientWidth")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
    })
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def click_and_load(driver, element):
    """Click what leads to another page, and wait until that page has replaced this one."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    html = driver.find_element("tag name", "html")
    element.click()

    def replaced(_driver) -> bool:
        # selenium's staleness_of knows only the stale-element error; while the old
        # document is being torn down, ChromeDriver 156 may instead answer "Node with
        # given id does not belong to the document" (seen in CI): just as stale.
        try:
            html.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as error:
            if "does not belong to the document" in str(error):
                return True
            raise
        return False

    WebDriverWait(driver, 10).until(replaced)


def assert_fits_a_phone(driver):
    """At phone width nothing scrolls sideways and the tables have become cards."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone"
    heads = driver.execute_script(
        "return [...document.querySelectorAll('table.cards thead')]"
        ".map(h => getComputedStyle(h).display)")
    assert all(display == "none" for display in heads)
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def assert_no_console_errors(driver):
    # CSP violations, failed loads and script errors all show up as SEVERE.
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors


def test_create_extension_see_password_once_then_register(browser, panel, database, tmp_path,
                                                          screenshots):
    from selenium.webdriver.common.by import By

    # Log in: the panel sends us to the login page and back.
    browser.get(panel.url + "/extensions/")
    assert "/login?next=" in browser.current_url
    save_screenshot(browser, screenshots / "login-phone.png", PHONE)
    browser.find_element(By.NAME, "username").send_keys(ADMIN[0])
    browser.find_element(By.NAME, "password").send_keys(ADMIN[1])
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "input[type=submit]"))
    assert browser.current_url == panel.url + "/extensions/"
    assert "No extensions yet." in browser.page_source

    # Create 1002: a weak password is refused with the reason, then a generated one.
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "New extension"))
    browser.find_element(By.NAME, "number").send_keys("1002")
    browser.find_element(By.NAME, "name").send_keys("Reception")
    assert browser.find_element(By.CSS_SELECTOR, "input[value=generate]").is_selected()
    browser.find_element(By.CSS_SELECTOR, "input[value=set]").click()
    browser.find_element(By.NAME, "password").send_keys("1002100210")
    browser.find_element(By.NAME, "confirm").send_keys("1002100210")
    create = "input[type=submit][value='Create extension']"
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, create))
    assert "Password must not be digits only." in browser.find_element(By.CLASS_NAME, "error").text
    save_screenshot(browser, screenshots / "new-desktop.png")
    save_screenshot(browser, screenshots / "new-phone.png", PHONE)
    assert_fits_a_phone(browser)
    browser.find_element(By.CSS_SELECTOR, "input[value=generate]").click()
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, create))

    # The password, once, with the softphone settings beside it.
    assert browser.find_element(By.TAG_NAME, "h1").text == "Extension 1002 created"
    password = browser.find_element(By.ID, "shown-password").text
    assert len(password) == 20 and password.isalnum()
    settings = browser.find_element(By.ID, "softphone-settings").text
    # The address phones can use, as the panel (no sipd has run yet) detects it.
    address, _ = phone_settings.detect(load_settings({"PBX_DB": str(database)}))
    for text in (f"SIP server\n{address}:5060", f"Domain\n{address}", "Transport\nUDP or TCP",
                 "User name (Username)\n1002", "Auth user (Login)\n1002"):
        assert text in settings
    save_screenshot(browser, screenshots / "password-desktop.png")
    save_screenshot(browser, screenshots / "password-phone.png", PHONE)
    assert_fits_a_phone(browser)

    click_and_load(browser, browser.find_element(By.PARTIAL_LINK_TEXT, "Done, go to 1002"))
    assert "/extensions/1002" in browser.current_url
    assert password not in browser.page_source
    browser.get(panel.url + "/extensions/")
    assert password not in browser.page_source
    row = browser.find_element(By.ID, "ext-1002")
    assert row.get_attribute("data-status") == "unregistered"

    # A phone registers with that password: sipp against a real sipd on the same database.
    with Sipd(database, PBX_RUN_DIR=str(tmp_path)) as sipd:
        local_port = free_port()
        result = run_sipp(
            "register_auth.xml", sipd.address, local_port=local_port, timeout=15,
            inject=[["1002", password, f"[authentication username=1002 password={password}]"]],
        )
        assert result.returncode == 0, result.explain() + sipd.log()
        # And a phone with the wrong password, and a scanner trying a number that is not here.
        for number, wrong in (("1002", "not-the-password"), ("9999", "guessed-password")):
            result = run_sipp(
                "register_wrong_password.xml", sipd.address, timeout=15,
                inject=[[number, wrong, f"[authentication username={number} password={wrong}]"]],
            )
            assert result.returncode == 0, result.explain() + sipd.log()

    browser.refresh()
    row = browser.find_element(By.ID, "ext-1002")
    assert row.get_attribute("data-status") == "registered", row.text
    assert f"sip:1002@127.0.0.1:{local_port}" in row.text
    assert "sipp register_auth" in row.text
    assert "127.0.0.1" in row.text and "UDP" in row.text
    save_screenshot(browser, screenshots / "extensions-desktop.png")
    save_screenshot(browser, screenshots / "extensions-phone.png", PHONE)
    assert_fits_a_phone(browser)

    # Its page answers "what happened?": the registration and the attempts behind it.
    click_and_load(browser, row.find_element(By.LINK_TEXT, "1002"))
    attempts = browser.find_element(By.ID, "attempts").text
    assert "success" in attempts and "sipp register_auth" in attempts
    assert "failure" in attempts and "sipp register_wrong_password" in attempts
    assert f"sip:1002@127.0.0.1:{local_port}" in browser.find_element(By.ID, "bindings").text
    save_screenshot(browser, screenshots / "extension-desktop.png")
    save_screenshot(browser, screenshots / "extension-phone.png", PHONE)
    assert_fits_a_phone(browser)

    # Every live binding, and the failures of every number, known or not.
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "Registrations"))
    assert f"sip:1002@127.0.0.1:{local_port}" in browser.find_element(By.ID, "registrations").text
    save_screenshot(browser, screenshots / "registrations-phone.png", PHONE)
    assert_fits_a_phone(browser)
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "Failed logins"))
    failures = browser.find_element(By.ID, "failures").text
    assert "9999 no such extension" in failures and "1002" in failures
    save_screenshot(browser, screenshots / "failures-desktop.png")
    save_screenshot(browser, screenshots / "failures-phone.png", PHONE)
    assert_fits_a_phone(browser)

    click_and_load(browser, browser.find_element(By.XPATH, "//button[normalize-space()='Log out']"))
    assert "/login" in browser.current_url
    assert_no_console_errors(browser)



# What phones send, shown inert; the live calls page following the calls by itself.

XSS = {
    "script": "<script>window.__xss = 'script'</script>",
    "img": "<img src=x onerror=\"window.__xss = 'img'\">",
    "attribute": "\"><svg onload=\"window.__xss = 'attr'\">",
}


def log_in(driver, panel):
    from selenium.webdriver.common.by import By

    driver.get(panel.url + "/login")
    driver.find_element(By.NAME, "username").send_keys(ADMIN[0])
    driver.find_element(By.NAME, "password").send_keys(ADMIN[1])
    click_and_load(driver, driver.find_element(By.CSS_SELECTOR, "input[type=submit]"))
    assert driver.current_url == panel.url + "/"


def assert_inert(driver):
    """No payload ran: no alert, no global set, nothing refused by the CSP or failed to load."""
    from selenium.common.exceptions import NoAlertPresentException

    try:
        text = driver.switch_to.alert.text
    except NoAlertPresentException:
        pass
    else:
        raise AssertionError(f"an alert opened: {text!r}")
    assert driver.execute_script("return typeof window.__xss") == "undefined"
    assert_no_console_errors(driver)


def test_what_phones_send_is_shown_inert(browser, database, tmp_path):
    """User-Agent, contact, display names and call reasons carrying markup show as text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with db.connection_context():
        rows = Rows()
        extension = rows.extension("1002", name=XSS["img"])
        rows.binding(extension, user_agent=XSS["script"],
                     contact=f"sip:1002@192.0.2.10;x={XSS['attribute']}")
        rows.attempt("1002", user_agent=XSS["img"], reason=XSS["script"])
        rows.attempt(XSS["attribute"], user_agent=XSS["script"])
        rows.call("1002", "1003", caller_name=XSS["script"], reason=XSS["img"])
        live = rows.call("1002", "1004", live=True, caller_name=XSS["img"],
                         caller_source=XSS["attribute"], codec=XSS["script"])
    db.close()
    panel = PanelProcess(database, tmp_path, free_tcp_port()).start()
    try:
        log_in(browser, panel)
        for path, element, payloads in (
            ("/extensions/", "ext-1002", ("script", "img", "attribute")),
            ("/extensions/1002", "bindings", ("script", "attribute")),
            ("/extensions/1002", "attempts", ("script", "img")),
            ("/registrations/", "registrations", ("script", "attribute")),
            ("/security/failures", "failures", ("script", "img", "attribute")),
            ("/calls/", "calls", ("script", "img")),
        ):
            browser.get(panel.url + path)
            text = browser.find_element(By.ID, element).text
            for name in payloads:
                assert XSS[name] in text, (path, name)
            assert_inert(browser)
        # The live calls: first as the page came, then as the script redraws it.
        browser.get(panel.url + "/calls/active")
        row = browser.find_element(By.ID, f"live-{live.id}")
        for name in ("img", "attribute", "script"):
            assert XSS[name] in row.text
        # Empty the table: the row that comes back is the script's, drawn from the JSON.
        browser.execute_script("document.querySelector('#active-calls tbody').replaceChildren()")
        row = WebDriverWait(browser, 6).until(
            lambda d: d.find_elements(By.ID, f"live-{live.id}"))[0]
        for name in ("img", "attribute", "script"):
            assert XSS[name] in row.text
        assert_inert(browser)
    finally:
        assert panel.stop() == 0, panel.log()


def test_live_calls_follow_the_database_and_hang_up(browser, database, tmp_path, screenshots):
    """A call appears, is answered, is hung up from the page and disappears, while the page
    stays the same page (polling, not reloading) until the button is pressed."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from core.models import Call

    with FakeControl() as sipd:
        panel = PanelProcess(database, tmp_path, free_tcp_port(),
                             PBX_CONTROL_SOCKET=sipd.path).start()
        try:
            log_in(browser, panel)
            browser.get(panel.url + "/calls/active")
            assert browser.find_element(By.ID, "no-calls").is_displayed()
            browser.execute_script("window.samePage = true")
            # The script redraws changed cells every 2 s: a cell read may be a gone one.
            wait = WebDriverWait(browser, 6, poll_frequency=0.1,
                                 ignored_exceptions=(StaleElementReferenceException,))

            with db.connection_context():
                Rows().extension("1003", name="Warehouse")
                call = Rows().call("1002", "1003", live=True, state="ringing", answered_at=None,
                                   started_at=time.time(), caller_name="Reception",
                                   caller_media="", callee_media="")
            row = wait.until(lambda d: d.find_elements(By.ID, f"live-{call.id}"))[0]
            assert "Reception" in row.text and "ringing" in row.text
            # The script draws the callee's panel name beside its number too.
            assert "1003 Warehouse" in row.find_element(
                By.CSS_SELECTOR, "td[data-label=Callee]").text
            # Polls that change nothing but the duration keep the row and its button.
            button = row.find_element(By.XPATH, ".//a[.='Hang up']")
            duration = row.find_element(By.CSS_SELECTOR, "td[data-label=Duration]").text
            wait.until(lambda d: d.find_element(
                By.CSS_SELECTOR, f"#live-{call.id} td[data-label=Duration]").text != duration)
            assert button.is_displayed() and row.get_attribute("data-state") == "ringing"
            assert not browser.find_element(By.ID, "no-calls").is_displayed()
            assert browser.find_element(By.ID, "active-summary").text == "1 live call"

            with db.connection_context():
                Call.update(state="answered", answered_at=time.time(),
                            caller_media="198.51.100.7:40000", callee_media="192.0.2.20:41000",
                            codec="PCMU/8000").where(Call.id == call.id).execute()
            wait.until(lambda d: d.find_element(By.ID, f"live-{call.id}")
                       .get_attribute("data-state") == "answered")
            row = browser.find_element(By.ID, f"live-{call.id}")
            assert "talking" in row.text and "198.51.100.7:40000" in row.text
            assert browser.execute_script("return window.samePage") is True
            save_screenshot(browser, screenshots / "live-calls-desktop.png")
            save_screenshot(browser, screenshots / "live-calls-phone.png", PHONE)
            assert_fits_a_phone(browser)

            # The button the script drew asks first; the question's button posts.
            click_and_load(browser, row.find_element(By.XPATH, ".//a[.='Hang up']"))
            assert "Hang up this call?" in browser.page_source and sipd.commands == []
            click_and_load(browser, browser.find_element(
                By.XPATH, "//*[@id='confirm-hangup']//button[.='Hang up']"))
            assert "The call 1002 → 1003 is being hung up." in browser.page_source
            assert sipd.commands == [{"command": "hangup", "id": call.id}]

            browser.execute_script("window.samePage = true")
            with db.connection_context():
                Call.update(state="ended", ended_at=time.time(), disposition="ANSWERED",
                            hangup_by="system").where(Call.id == call.id).execute()
            wait.until(lambda d: d.find_element(By.ID, "no-calls").is_displayed())
            assert not browser.find_elements(By.ID, f"live-{call.id}")
            assert browser.find_element(By.ID, "active-summary").text == "0 live calls"
            assert browser.execute_script("return window.samePage") is True

            # And in the history, with the admin's hang-up in the audit log.
            browser.get(panel.url + "/calls/")
            assert "ANSWERED" in browser.find_element(By.ID, f"call-{call.id}").text
            browser.find_element(By.NAME, "extension").send_keys("1003")
            click_and_load(browser, browser.find_element(By.XPATH, "//button[.='Filter']"))
            assert browser.current_url.endswith("/calls/?extension=1003&since=&until=&disposition=")
            assert browser.find_element(By.ID, f"call-{call.id}")
            save_screenshot(browser, screenshots / "history-desktop.png")
            save_screenshot(browser, screenshots / "history-phone.png", PHONE)
            assert_fits_a_phone(browser)
            browser.get(panel.url + "/security/audit")
            assert "hung up call 1002 → 1003" in browser.find_element(By.ID, "audit").text
            save_screenshot(browser, screenshots / "audit-desktop.png")
            assert_no_console_errors(browser)
        finally:
            assert panel.stop() == 0, panel.log()

"""A new admin's first hour, walked in real headless Chromium against a real sipd and panel.

The database is made as on a fresh server: `pbxctl init --first-admin`, whose printed
password is the only way in. The admin logs in with it and lands on the dashboard;
creates two extensions in the panel, each time reading the settings shown once
(password, server address and port, the Linphone QR code, decoded with zbarimg as a
phone would scan it, and the microsip.ini offered for download); two real phones
(baresip) register, one configured from the fields on the screen, the other from its
microsip.ini, and the extension list shows both registered. One calls the other: the
live calls page, which polls by itself, shows the call talking with names beside the
numbers, drops it once the caller hangs up, the history has it, and the dashboard counts
it. A third phone with
a mistyped password appears on the failed-logins page with the reason. Then the admin
switches the panel to Uzbek and to Russian on their own page and sees that same page
translated, and last replaces the printed password with their own. The pages a new admin
reads are checked at a phone's size too (nothing wider than the screen). Screenshots of each step go to $PBX_SCREENSHOTS if set, else a
temporary directory.

Every wait is on a condition with a bound (page text, a phone's event, a row); nothing
sleeps. sipd runs with the default settings, with which baresip 1.0 registers (README,
"Phones").
Chromium, chromedriver, baresip or zbarimg missing is a failure, never a skip.
"""

from __future__ import annotations

import base64
import configparser
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest
import test_browser
from panel_testing import PanelProcess, free_tcp_port
from test_browser import (
    PHONE,
    assert_fits_a_phone,
    assert_no_console_errors,
    click_and_load,
    save_screenshot,
)
from test_browser_calls import history_row, live_rows, talking_row, wait_until
from test_browser_i18n import choose_language

from tests.sip import callkit as ck
from tests.sip.softphone import Baresip
from tests.support import LOOPBACK, ROOT, base_env, require_tool

chromium = test_browser.chromium
browser = test_browser.browser

EXTENSIONS = {"1001": "Reception", "1002": "Sales"}
# What the failed-logins page says in each language (app/translations/*/messages.po).
FAILURES_PAGE = {
    "en": ("Failed logins", "wrong password"),
    "uz": ("Muvaffaqiyatsiz kirishlar", "notoʻgʻri parol"),
    "ru": ("Неудачные входы", "неверный пароль"),
}


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "WORK_ROOT", tmp_path)


@pytest.fixture
def screenshots(tmp_path) -> Path:
    directory = Path(os.environ.get("PBX_SCREENSHOTS") or tmp_path / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def phones():
    started: list[Baresip] = []
    yield started
    for phone in started:
        phone.stop()


def first_admin(db_path: Path) -> tuple[str, str]:
    """`pbxctl init --first-admin` on a new database: the user and password it prints."""
    result = subprocess.run([sys.executable, "-m", "pbxcli", "init", "--first-admin"],
                            env=base_env(str(db_path)), cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    shown = re.findall(r"^First admin: user (\S+), password (\S+)$", result.stdout, re.M)
    assert len(shown) == 1, result.stdout
    return shown[0]


@pytest.fixture
def pbx(tmp_path):
    """(sipd, panel, (user, password) of the first admin) on one new database."""
    db_path = tmp_path / "pbx.db"
    admin = first_admin(db_path)
    # A short directory of its own: a Unix socket's path has ~100 bytes at most.
    run_dir = Path(tempfile.mkdtemp(prefix="pbx-run-"))
    # No PBX_PUBLIC_ADDRESS, as on a new install: the panel shows what it detects.
    server = ck.SipdServer(tmp_path, numbers=(), PBX_RUN_DIR=str(run_dir),
                           PBX_PUBLIC_ADDRESS="")
    assert server.db_path == db_path
    server.start()
    panel = None
    try:
        panel = PanelProcess(db_path, tmp_path, free_tcp_port(),
                             PBX_CONTROL_SOCKET=str(run_dir / "sipd.sock")).start()
        yield server, panel, admin
    finally:
        if panel is not None:
            assert panel.stop() == 0, panel.log()
        server.stop()
        (tmp_path / "sipd.log").write_text(server.log())
        shutil.rmtree(run_dir, ignore_errors=True)


def shown_settings(driver) -> dict[str, str]:
    """The softphone settings on the page shown once, by label."""
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#softphone-settings dt')]"
        ".map(dt => [dt.textContent.trim(), dt.nextElementSibling.querySelector('code')"
        ".textContent]))")


def scanned_qr(driver, tmp_path: Path) -> str:
    """What a phone's camera reads from the QR code as the browser draws it."""
    from selenium.webdriver.common.by import By

    qr = driver.find_element(By.CSS_SELECTOR, "#linphone-provisioning svg")
    driver.execute_script("arguments[0].scrollIntoView()", qr)
    image = tmp_path / f"qr-{len(list(tmp_path.glob('qr-*.png')))}.png"
    image.write_bytes(qr.screenshot_as_png)
    decoded = subprocess.run([require_tool("zbarimg"), "--quiet", "--raw", str(image)],
                             capture_output=True, text=True, timeout=30)
    assert decoded.returncode == 0, decoded.stdout + decoded.stderr
    return decoded.stdout.strip()


def microsip_file(driver) -> dict[str, str]:
    """The [Account1] section of the microsip.ini the page offers (a data: URL)."""
    from selenium.webdriver.common.by import By

    link = driver.find_element(By.ID, "microsip-file")
    assert link.get_attribute("download") == "microsip.ini"
    href = link.get_attribute("href")
    head, _, payload = href.partition(",")
    assert head.endswith(";base64"), href[:80]
    text = base64.b64decode(payload).decode("utf-16")  # with its BOM, as MicroSIP writes it
    ini = configparser.ConfigParser(interpolation=None)
    ini.optionxform = str  # MicroSIP's keys are camelCase
    ini.read_string(text)
    assert ini["Settings"]["accountId"] == "1"
    return dict(ini["Account1"])


def create_extension(driver, panel, number: str, name: str, tmp_path: Path, sipd_port: int):
    """Create `number` in the panel with a generated password; return what the page shows
    once: (settings by label, microsip.ini's account)."""
    from selenium.webdriver.common.by import By

    driver.get(panel.url + "/extensions/")
    click_and_load(driver, driver.find_element(By.LINK_TEXT, "New extension"))
    driver.find_element(By.NAME, "number").send_keys(number)
    driver.find_element(By.NAME, "name").send_keys(name)
    driver.find_element(By.CSS_SELECTOR, "input[value=generate]").click()
    click_and_load(driver, driver.find_element(
        By.CSS_SELECTOR, "input[type=submit][value='Create extension']"))
    assert driver.find_element(By.TAG_NAME, "h1").text == f"Extension {number} created"
    assert "This password is shown only this once." in driver.page_source

    settings = shown_settings(driver)
    password = driver.find_element(By.ID, "shown-password").text
    assert settings["Password"] == password and len(password) == 20, settings
    # The running sipd's address and port, as the panel found them.
    assert settings["SIP server"] == f"{LOOPBACK}:{sipd_port}", settings
    assert settings["Port"] == str(sipd_port) and settings["Domain"] == LOOPBACK, settings
    assert settings["User name (Username)"] == settings["Auth user (Login)"] == number
    assert settings["Display name"] == name, settings
    source = driver.find_element(By.ID, "address-source").text
    assert source.startswith(f"Address {LOOPBACK}:"), source
    warning = driver.find_element(By.CLASS_NAME, "address-warning").text
    assert warning.startswith(f"{LOOPBACK} is a loopback address"), warning

    # The QR code decodes to the one-time Linphone link shown beside it; it holds the account.
    url = scanned_qr(driver, tmp_path)
    assert url == driver.find_element(By.ID, "linphone-url").text, url
    assert url.startswith(panel.url + "/extensions/provision/"), url
    with urllib.request.urlopen(url, timeout=10) as response:
        linphone = response.read().decode()
    assert f'<entry name="passwd" overwrite="true">{password}</entry>' in linphone
    assert f"sip:{LOOPBACK}:{sipd_port};transport=udp" in linphone

    ini = microsip_file(driver)
    assert (ini["server"], ini["username"], ini["authID"], ini["password"]) == (
        settings["SIP server"], number, number, password), ini
    assert ini["displayName"] == name, ini
    assert_no_console_errors(driver)
    assert_fits_a_phone(driver)  # what is shown once is read on a phone as often as not

    # Done: the extension's page, and the list, show none of it again.
    click_and_load(driver, driver.find_element(By.PARTIAL_LINK_TEXT, f"Done, go to {number}"))
    assert driver.current_url == panel.url + f"/extensions/{number}"
    for page in (f"/extensions/{number}", "/extensions/"):
        driver.get(panel.url + page)
        assert password not in driver.page_source, page
        assert not driver.find_elements(By.ID, "linphone-provisioning"), page
        assert not driver.find_elements(By.ID, "microsip-file"), page
    return settings, ini


def reloaded_until(driver, url: str, predicate, timeout: float, what: str):
    """Reload `url` (a page that does not poll by itself) until `predicate(driver)` holds."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def check(d):
        d.get(url)
        return predicate(d)

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(check)
    except TimeoutException as error:
        raise AssertionError(f"{what} not within {timeout} s") from error


def statuses(driver) -> dict[str, str]:
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('tr[id^=ext-]')]"
        ".map(tr => [tr.id.slice(4), tr.dataset.status]))")


def failure_rows(driver) -> list[dict[str, str]]:
    return driver.execute_script(
        "const t = document.getElementById('failures'); if (!t) return [];"
        "return [...t.tBodies[0].rows].map(tr => Object.fromEntries([...tr.cells]"
        ".map(td => [td.cellIndex, td.innerText.trim()])))")


def test_a_new_admin_sets_up_two_phones_and_a_call(browser, pbx, tmp_path, screenshots, phones):
    from selenium.webdriver.common.by import By

    server, panel, (username, password) = pbx
    sipd_port = int(server.address.rsplit(":", 1)[1])

    # Log in with the password pbxctl printed once; the first page is the dashboard.
    browser.get(panel.url + "/")
    assert "/login?next=" in browser.current_url
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(password)
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "input[type=submit]"))
    assert browser.current_url == panel.url + "/"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Dashboard"
    tile = " ".join(browser.find_element(By.ID, "tile-registered").text.split())
    assert tile.startswith("Registered extensions 0 / 0"), tile
    sipd_row = browser.find_element(By.ID, "service-sipd")
    assert sipd_row.get_attribute("data-state") == "running", sipd_row.text
    save_screenshot(browser, screenshots / "dashboard-new.png")
    assert_fits_a_phone(browser)
    save_screenshot(browser, screenshots / "dashboard-new-phone.png", PHONE)

    # Two extensions, each with what the page shows once.
    shown = {number: create_extension(browser, panel, number, name, tmp_path, sipd_port)
             for number, name in EXTENSIONS.items()}

    # Two real phones: 1001 typed from the fields on the screen, 1002 from its microsip.ini.
    fields, _ = shown["1001"]
    caller = Baresip("reception", fields["User name (Username)"], fields["Password"],
                     fields["SIP server"], f"{LOOPBACK}:{ck.free_ports()}", 440.0,
                     ctrl_port=ck.free_ports(), auto_answer=False)
    phones.append(caller.start())
    _, ini = shown["1002"]
    callee = Baresip("sales", ini["username"], ini["password"], ini["server"],
                     f"{LOOPBACK}:{ck.free_ports()}", 1000.0)
    phones.append(callee.start())
    reloaded_until(browser, panel.url + "/extensions/",
                   lambda d: statuses(d) == {"1001": "registered", "1002": "registered"}, 15,
                   "1001 and 1002 registered on the extension list")
    for number in EXTENSIONS:
        row = browser.find_element(By.ID, f"ext-{number}").text
        assert "baresip" in row and "UDP" in row, row
    save_screenshot(browser, screenshots / "extensions-registered.png")

    # 1001 calls 1002 (which answers by itself): the live page shows it talking.
    browser.get(panel.url + "/calls/active")
    assert browser.find_element(By.ID, "no-calls").is_displayed()
    browser.execute_script("window.samePage = true")

    def story() -> str:
        return (f"--- caller\n{caller.log()[-2500:]}\n--- callee\n{callee.log()[-2500:]}\n"
                f"--- sipd\n{server.log()[-3000:]}")

    caller.command("dial", f"sip:1002@{fields['SIP server']}")
    caller.wait_event("CALL_ESTABLISHED", timeout=15)
    row = wait_until(browser, lambda d: talking_row(d, "1001", "1002"), 10,
                     "the call 1001 -> 1002 talking on the live page", story)
    call_id = int(row["id"].removeprefix("live-"))
    assert "Reception" in row["text"] and "Sales" in row["text"], row
    assert browser.find_element(By.ID, "active-summary").text == "1 live call"
    save_screenshot(browser, screenshots / "live-call.png")
    assert_fits_a_phone(browser)

    caller.command("hangup")
    caller.wait_event("CALL_CLOSED", timeout=10)
    wait_until(browser, lambda d: d.find_element(By.ID, "no-calls").is_displayed(), 6,
               "the live page emptied after the caller hung up", story)
    assert not live_rows(browser)
    assert browser.execute_script("return window.samePage") is True

    browser.get(panel.url + "/calls/")
    cells = history_row(browser, call_id)
    # The caller as the panel names it (not what the phone put in From), the callee dialled.
    assert (cells["Caller"], cells["Callee"]) == ("1001 Reception", "1002"), cells
    assert (cells["Outcome"], cells["Hung up by"]) == ("ANSWERED", "caller"), cells
    assert re.fullmatch(r"\d+ s", cells["Talk time"]), cells
    save_screenshot(browser, screenshots / "history.png")

    # The dashboard now: both phones registered, today's call counted.
    browser.get(panel.url + "/")
    tile = " ".join(browser.find_element(By.ID, "tile-registered").text.split())
    assert tile.startswith("Registered extensions 2 / 2 2 bindings"), tile
    tile = " ".join(browser.find_element(By.ID, "tile-today").text.split())
    assert tile == "Calls today 1 1 answered, 0 not answered", tile

    # A third phone with the password mistyped: the failed-logins page says why.
    typo = Baresip("typo", "1002", ini["password"][:-1], ini["server"],
                   f"{LOOPBACK}:{ck.free_ports()}", 1000.0)
    phones.append(typo.start())
    english, reason = FAILURES_PAGE["en"]
    rows = reloaded_until(
        browser, panel.url + "/security/failures",
        lambda d: [r for r in failure_rows(d) if r["1"] == "1002" and r["5"] == reason], 15,
        "the mistyped password of 1002 on the failed-logins page")
    assert "baresip" in rows[0]["4"], rows
    assert browser.find_element(By.TAG_NAME, "h1").text == english
    save_screenshot(browser, screenshots / "failures-en.png")
    assert_no_console_errors(browser)

    # The same page in Uzbek, then in Russian, chosen on the admin's own page.
    for language in ("uz", "ru"):
        choose_language(browser, panel, language)
        browser.get(panel.url + "/security/failures")
        heading, reason = FAILURES_PAGE[language]
        assert browser.find_element(By.TAG_NAME, "h1").text == heading
        row = next(r for r in failure_rows(browser) if r["1"] == "1002")
        assert row["5"] == reason, row
        text = browser.find_element(By.TAG_NAME, "body").text
        for word in FAILURES_PAGE["en"]:
            assert word not in text, (language, word)
        save_screenshot(browser, screenshots / f"failures-{language}.png")
        assert_fits_a_phone(browser)
        save_screenshot(browser, screenshots / f"failures-{language}-phone.png", PHONE)
        assert_no_console_errors(browser)

    # Last, on a phone, the admin replaces the printed password with their own; the
    # printed one no longer logs in, the new one does.
    choose_language(browser, panel, "en")
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    browser.get(panel.url + "/account")
    mine = "Toshkent-ofis-2026!"
    browser.find_element(By.NAME, "current").send_keys(password)
    browser.find_element(By.NAME, "password").send_keys(mine)
    browser.find_element(By.NAME, "confirm").send_keys(mine)
    click_and_load(browser, browser.find_element(By.NAME, "submit"))
    assert "Your password is changed." in browser.page_source, browser.page_source[-2000:]
    assert_fits_a_phone(browser)
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    for attempt, works in ((password, False), (mine, True)):
        browser.delete_all_cookies()
        browser.get(panel.url + "/login")
        browser.find_element(By.NAME, "username").send_keys(username)
        browser.find_element(By.NAME, "password").send_keys(attempt)
        click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "input[type=submit]"))
        assert (browser.current_url == panel.url + "/") is works, (attempt, browser.current_url)
    assert_no_console_errors(browser)

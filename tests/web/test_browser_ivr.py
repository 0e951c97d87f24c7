"""An IVR menu and business hours made in the panel, in real headless Chromium against the
panel as a process.

The admin opens "IVR & hours" from the menu, creates menu main with a recording chosen
in the file picker (a 44.1 kHz stereo WAV sox made) and two keys, first with a key to
an extension that does not exist (the row says so, nothing is saved), and sees the
menu listed with its keys and a player that plays the converted recording. Then
business hours that lead to it, shown open now; and the menu's delete page refuses
while the hours lead to it. Chromium or chromedriver missing is a failure, never a skip.
"""

from __future__ import annotations

import subprocess

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

from core import ivr
from core.models import db

chromium = test_browser.chromium
browser = test_browser.browser
database = test_browser.database
screenshots = test_browser.screenshots


@pytest.fixture
def sounds(tmp_path):
    return tmp_path / "sounds"


@pytest.fixture
def panel(database, tmp_path, sounds):
    with db.connection_context():
        Rows().extension("1001", name="Alice")
        Rows().extension("1002", name="Bob")
    db.close()
    panel = PanelProcess(database, tmp_path, free_tcp_port(), PBX_SOUNDS_DIR=str(sounds)).start()
    yield panel
    assert panel.stop() == 0, panel.log()


def fill(element, value: str) -> None:
    element.clear()
    element.send_keys(value)


def test_create_a_menu_with_a_recording_then_hours_leading_to_it(
    browser, panel, tmp_path, sounds, screenshots
):
    from selenium.webdriver.common.by import By

    recording = tmp_path / "welcome.wav"
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            "44100",
            "-c",
            "2",
            "-b",
            "16",
            str(recording),
            "synth",
            "1",
            "sine",
            "440",
        ],
        check=True,
    )

    log_in(browser, panel)
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "IVR & hours"))
    assert "No IVR menus yet." in browser.page_source
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "New IVR menu"))
    browser.find_element(By.NAME, "name").send_keys("main")
    browser.find_element(By.NAME, "prompt").send_keys(str(recording))
    browser.find_element(By.CSS_SELECTOR, "tr[data-key='1'] input").send_keys("1001")
    browser.find_element(By.CSS_SELECTOR, "tr[data-key='2'] input").send_keys("1009")
    fill(browser.find_element(By.NAME, "on_timeout"), "voicemail:1002")
    save_screenshot(browser, screenshots / "ivr-form-desktop.png")
    save_screenshot(browser, screenshots / "ivr-form-phone.png", PHONE)
    assert_fits_a_phone(browser)
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "input[value=Save]"))

    # Key 2 leads nowhere: its row says so, what was typed stays, nothing is saved.
    error = browser.find_element(By.CSS_SELECTOR, "tr[data-key='2'] p.error").text
    assert error == "1009 is no extension or ring group, and no outbound route takes it.", error
    assert (
        browser.find_element(By.CSS_SELECTOR, "tr[data-key='1'] input").get_attribute("value")
        == "1001"
    )
    with db.connection_context():
        assert ivr.list_ivrs() == []
    # A browser never sends a file back: it is chosen again.
    browser.find_element(By.NAME, "prompt").send_keys(str(recording))
    fill(browser.find_element(By.CSS_SELECTOR, "tr[data-key='2'] input"), "1002")
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "input[value=Save]"))

    assert "IVR menu main created: calls reach it as ivr:main." in browser.page_source
    row = browser.find_element(By.ID, "ivr-main")
    assert [li.text for li in row.find_elements(By.CSS_SELECTOR, "ul.keys li")] == [
        "1 → 1001 Alice",
        "2 → 1002 Bob",
    ]
    assert row.find_element(By.CSS_SELECTOR, "td.on-timeout").text == "voicemail:1002"
    # The player loads the converted recording: one second of it.
    duration = browser.execute_async_script(
        "const done = arguments[0], audio = document.querySelector('#ivr-main audio');"
        "audio.preload = 'auto'; audio.onloadedmetadata = () => done(audio.duration);"
        "audio.onerror = () => done(-1); audio.load();"
    )
    assert duration == pytest.approx(1.0, abs=0.05)
    save_screenshot(browser, screenshots / "ivr-desktop.png")
    save_screenshot(browser, screenshots / "ivr-phone.png", PHONE)
    assert_fits_a_phone(browser)
    with db.connection_context():
        menu = ivr.get_ivr("main")
        assert ivr.options_of(menu) == {"1": "1001", "2": "1002"}
    assert (sounds / "ivr" / "main.wav").is_file()

    # Business hours, open all week, to the menu.
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "Business hours"))
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "New business hours"))
    browser.find_element(By.NAME, "name").send_keys("office")
    browser.find_element(By.NAME, "rules").send_keys("mon-fri 9:00-18:00\nsat-sun 00:00-24:00")
    browser.find_element(By.NAME, "in_destination").send_keys("ivr:main")
    browser.find_element(By.NAME, "out_destination").send_keys("voicemail:1001")
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "input[value=Save]"))
    assert "Business hours office created" in browser.page_source
    row = browser.find_element(By.ID, "hours-office")
    with db.connection_context():
        state = "open now" if ivr.is_open(ivr.get_schedule("office")) else "closed now"
    assert row.find_element(By.CSS_SELECTOR, "td.now .badge").text == state
    assert [li.text for li in row.find_elements(By.CSS_SELECTOR, "td.rules li")] == [
        "mon-fri 09:00-18:00",
        "sat-sun 00:00-24:00",
    ]
    save_screenshot(browser, screenshots / "hours-desktop.png")
    save_screenshot(browser, screenshots / "hours-phone.png", PHONE)
    assert_fits_a_phone(browser)

    # The menu cannot go while the hours lead to it.
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "IVR menus"))
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "#ivr-main a.danger"))
    assert "business hours office" in browser.find_element(By.ID, "in-use").text
    assert not browser.find_elements(By.ID, "confirm-delete")
    assert_no_console_errors(browser)


def test_a_recording_over_the_limit_is_the_forms_error(browser, panel, tmp_path, sounds):
    """A recording larger than the menu form takes (32 MB, of a 200 s CD-quality WAV sox
    made) comes back as the form's error saying the limit, not a bare 413 page."""
    from selenium.webdriver.common.by import By

    recording = tmp_path / "long welcome.wav"
    subprocess.run(
        ["sox", "-n", "-r", "44100", "-c", "2", "-b", "16", str(recording),
         "synth", "200", "sine", "440"],
        check=True,
    )
    assert recording.stat().st_size > 32 * 1024 * 1024

    log_in(browser, panel)
    browser.get(panel.url + "/ivr/new")
    browser.find_element(By.NAME, "name").send_keys("main")
    browser.find_element(By.NAME, "prompt").send_keys(str(recording))
    browser.find_element(By.CSS_SELECTOR, "tr[data-key='1'] input").send_keys("1001")
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "input[value=Save]"))

    assert browser.current_url == panel.url + "/ivr/new"
    errors = [p.text for p in browser.find_elements(By.CSS_SELECTOR, "p.error")]
    assert errors == ["The file is larger than 32 MB, the most this form takes."], errors
    # The same form, to choose a shorter recording; nothing saved.
    assert browser.find_elements(By.NAME, "prompt") and browser.find_elements(By.NAME, "name")
    with db.connection_context():
        assert ivr.list_ivrs() == []
    assert not (sounds / "ivr").exists() or not any((sounds / "ivr").iterdir())
    # The page's own status is the one thing Chromium reports: 413, the form's answer.
    logged = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert [m.split(" - ")[0] for m in logged] == [panel.url + "/ivr/new"], logged
    assert "status of 413" in logged[0], logged

"""Sounds in the panel, in real headless Chromium against the panel as a process.

The admin opens Sounds from the menu, hears the Russian "goodbye" as built,
replaces it with a recording from disk (a 44.1 kHz stereo WAV: the player then
decodes the PBX's converted 2 s file, the cell says "uploaded"), tries a text
file and is told it is not audio; then on Music on hold adds a tune, hears it in
the library's player and chooses it: the Setting row sipd reads at the next
hold names it. Chromium or chromedriver missing is a failure, never a skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import test_browser
from panel_testing import PanelProcess, free_tcp_port
from test_browser import (
    PHONE,
    assert_fits_a_phone,
    assert_no_console_errors,
    click_and_load,
    log_in,
    save_screenshot,
)
from test_panel_sounds import tone_wav

from core import music
from core.config import DEFAULT_MOH, load_settings
from core.models import db

chromium = test_browser.chromium
browser = test_browser.browser
database = test_browser.database
screenshots = test_browser.screenshots

# The player's metadata once Chromium has fetched and decoded the file's header.
LOAD = """const [selector, done] = arguments;
const audio = document.querySelector(selector);
audio.addEventListener('loadedmetadata', () => done({duration: audio.duration, error: null}));
audio.addEventListener('error', () => done({duration: null, error: audio.error.code}));
audio.preload = 'metadata'; audio.load();"""


@pytest.fixture
def panel(database, tmp_path, built_prompts):
    panel = PanelProcess(database, tmp_path, free_tcp_port(),
                         PBX_PROMPTS_DIR=str(built_prompts),
                         PBX_SOUNDS_DIR=str(tmp_path / "sounds")).start()
    yield panel
    assert panel.stop() == 0, panel.log()


def played(browser, selector: str) -> float:
    browser.set_script_timeout(10)
    loaded = browser.execute_async_script(LOAD, selector)
    assert loaded["error"] is None, (selector, loaded)
    return loaded["duration"]


def test_replace_a_prompt_then_add_and_choose_music(browser, panel, database, tmp_path,
                                                    screenshots):
    from selenium.webdriver.common.by import By

    recording = tmp_path / "my goodbye.wav"
    recording.write_bytes(tone_wav(seconds=2.0))
    letter = tmp_path / "letter.txt"
    letter.write_text("Dear admin, this is not a recording.\n")
    tune = tmp_path / "Lobby Tune.wav"
    tune.write_bytes(tone_wav(seconds=3.0, hz=660))

    log_in(browser, panel)
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "Sounds"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Prompts"
    ru = '#prompt-goodbye td[data-language="ru"]'
    assert browser.find_element(By.CSS_SELECTOR, ru + " [data-origin]").text == "synthesised"
    built = played(browser, ru + " audio")
    assert 0.3 < built < 3, built  # espeak-ng's "До свидания."
    assert abs(played(browser, '#prompt-goodbye td[data-language="en"] audio') - 0.8) < 0.5
    save_screenshot(browser, screenshots / "prompts-desktop.png")
    save_screenshot(browser, screenshots / "prompts-phone.png", PHONE)
    assert_fits_a_phone(browser)

    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, ru + " a.button"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Prompt goodbye (Russian)"
    browser.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(letter))
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "#upload-form [type=submit]"))
    assert browser.find_element(By.CSS_SELECTOR, ".field .error").text == (
        "This is not an audio file the PBX can read: upload a WAV, FLAC, OGG or MP3 file.")
    assert not (tmp_path / "sounds" / "ru" / "goodbye.wav").exists()
    # The refusal is answered 400, which Chromium logs; nothing else is logged.
    logged = [entry["message"] for entry in browser.get_log("browser")]
    assert len(logged) == 1 and "/sounds/prompts/ru/goodbye" in logged[0] and "400" in logged[0]
    browser.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(recording))
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "#upload-form [type=submit]"))
    assert ("The prompt goodbye (Russian) now plays your recording."
            in browser.find_element(By.CSS_SELECTOR, ".flash").text)
    assert browser.find_element(By.CSS_SELECTOR, ru + " [data-origin]").text == "uploaded"
    assert abs(played(browser, ru + " audio") - 2.0) < 0.01  # the converted upload
    assert (tmp_path / "sounds" / "ru" / "goodbye.wav").is_file()

    click_and_load(browser, browser.find_element(By.LINK_TEXT, "Music on hold"))
    assert browser.find_element(By.CSS_SELECTOR, "#music-default").get_attribute(
        "data-chosen") == "1"
    assert abs(played(browser, "#music-default audio") - _seconds(DEFAULT_MOH)) < 0.05
    browser.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(tune))
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "#upload-form [type=submit]"))
    assert abs(played(browser, "#music-lobby-tune audio") - 3.0) < 0.01
    click_and_load(browser, browser.find_element(
        By.CSS_SELECTOR, "#music-lobby-tune button[type=submit]:not(.danger)"))
    assert "Held callers hear lobby-tune from the next hold on." in browser.page_source
    assert browser.find_element(By.CSS_SELECTOR, "#music-lobby-tune").get_attribute(
        "data-chosen") == "1"
    save_screenshot(browser, screenshots / "music-desktop.png")
    save_screenshot(browser, screenshots / "music-phone.png", PHONE)
    assert_fits_a_phone(browser)
    assert_no_console_errors(browser)

    settings = load_settings({"PBX_DB": str(database), "PBX_SOUNDS_DIR": str(tmp_path / "sounds")})
    with db.connection_context():
        assert music.playing(settings.sounds_dir, settings.moh_file) == (
            str(tmp_path / "sounds" / "moh" / "lobby-tune.wav"), "")


def _seconds(path: Path) -> float:
    from core import sounds

    return sounds.duration(path)

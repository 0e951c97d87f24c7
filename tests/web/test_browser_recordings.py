"""Call recording from the panel, in real headless Chromium against the panel as a process.

The admin opens extension 1001 from the list, turns recording of its calls on
(the switch `pbxctl ext record` is), then finds its recorded call in the call
history: the row's player loads the panel's recording URL and Chromium decodes
it as the 2 s stereo WAV the media process wrote (sipd/media/wav.py, the tap's
own writer), and the download link serves the same bytes as an attachment. A
recording whose file is gone says so in its row instead of a player that
cannot play. Chromium or chromedriver missing is a failure, never a skip.
"""

from __future__ import annotations

import math
import struct
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

from core.models import Extension, db
from sipd.media import wav

chromium = test_browser.chromium
browser = test_browser.browser
database = test_browser.database
screenshots = test_browser.screenshots

# The element's metadata once Chromium has fetched and decoded the file's header.
LOAD = """const [id, done] = arguments;
const audio = document.querySelector('#' + id + ' audio');
audio.addEventListener('loadedmetadata', () => done({duration: audio.duration, error: null}));
audio.addEventListener('error', () => done({duration: null, error: audio.error.code}));
audio.preload = 'metadata'; audio.load();"""
FETCH = """const [url, done] = arguments;
fetch(url).then(r => r.arrayBuffer().then(b => done({status: r.status, size: b.byteLength,
  disposition: r.headers.get('Content-Disposition')})));"""


@pytest.fixture
def panel(database, tmp_path):
    panel = PanelProcess(database, tmp_path, free_tcp_port(),
                         PBX_RECORDING_DIR=str(tmp_path / "recordings")).start()
    yield panel
    assert panel.stop() == 0, panel.log()


def tone(seconds: float, hz: float):
    """Stereo 16-bit frames: the caller's tone left, the callee's (an octave up) right."""
    frames = int(8000 * seconds)
    for start in range(0, frames, 160):
        yield b"".join(struct.pack("<hh", int(8000 * math.sin(2 * math.pi * hz * n / 8000)),
                                   int(8000 * math.sin(4 * math.pi * hz * n / 8000)))
                       for n in range(start, min(frames, start + 160)))


def test_turn_recording_on_then_play_and_download_the_call(browser, panel, database, tmp_path,
                                                           screenshots):
    from selenium.webdriver.common.by import By

    with db.connection_context():
        Rows().extension("1001", name="Reception")
        Rows().extension("1002")
    log_in(browser, panel)
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "Extensions"))
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "1001"))
    assert browser.find_element(By.ID, "record-state").text.startswith("off")
    click_and_load(browser, browser.find_element(
        By.XPATH, "//button[normalize-space()='Record its calls']"))
    assert ("The calls of 1001 are recorded from the next one; each recording is kept 90 days."
            in browser.page_source)
    assert browser.find_element(By.ID, "record-state").text.startswith("on")
    with db.connection_context():
        assert Extension.by_number("1001").record_calls

    # The call as sipd records it: its row names the file, the media process writes it.
    with db.connection_context():
        call = Rows().call("1001", "1002")
        call.recording = f"{time.strftime('%Y/%m/%d')}/{call.id}-1001-1002.wav"
        call.save()
        gone = Rows().call("1001", "1002", recording="2026/01/01/1-1001-1002.wav")
    path = tmp_path / "recordings" / call.recording
    path.parent.mkdir(parents=True)
    assert wav.write_pcm_chunks(path, tone(2.0, 440), channels=2) == 16000

    click_and_load(browser, browser.find_element(By.LINK_TEXT, "Call history"))
    browser.set_script_timeout(10)
    loaded = browser.execute_async_script(LOAD, f"call-{call.id}")
    assert loaded["error"] is None and abs(loaded["duration"] - 2.0) < 0.01, loaded
    link = browser.find_element(By.CSS_SELECTOR, f"#call-{call.id} a.download")
    assert link.text == "Download"
    fetched = browser.execute_async_script(FETCH, link.get_attribute("href"))
    assert fetched == {"status": 200, "size": path.stat().st_size,
                       "disposition": f"attachment; filename=call-{call.id}-1001-1002.wav"}
    missing = browser.find_element(By.CSS_SELECTOR, f"#call-{gone.id} [data-recording]")
    assert missing.text == "recording missing"
    assert not browser.find_elements(By.CSS_SELECTOR, f"#call-{gone.id} audio")
    save_screenshot(browser, screenshots / "recordings-desktop.png")
    save_screenshot(browser, screenshots / "recordings-phone.png", PHONE)
    assert_fits_a_phone(browser)

    # The call's own page plays it too.
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, f"#call-{call.id} td a"))
    loaded = browser.execute_async_script(LOAD, "recording")
    assert loaded["error"] is None and abs(loaded["duration"] - 2.0) < 0.01, loaded
    assert_no_console_errors(browser)

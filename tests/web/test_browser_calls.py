"""A real call, seen in the panel in real headless Chromium while it runs and afterwards.

A real sipd and the panel as a real process share one SQLite database (1001 and
1002 made with core.accounts, the admin with core.accounts.create_admin) and the
panel reaches that sipd's control socket. 1002 registers and answers with sipp
(register_auth.xml, then callee_answer.xml), 1001 calls it with sipp
(caller_call.xml, ~6 s of talk). The live calls page, which polls by itself,
shows the call as talking while the caller's sipp still runs, drops it once the
caller hung up, and the history has its record: ANSWERED, hung up by the caller,
the talk time. Then a second call is hung up with the page's "Hang up" button:
both phones get a BYE from sipd and the history says the system hung up.
Chromium, chromedriver or sipp missing is a failure, never a skip.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import test_browser
from panel_testing import ADMIN, PanelProcess, free_tcp_port
from test_browser import assert_no_console_errors, click_and_load, log_in, save_screenshot

from core.accounts import create_admin
from core.config import load_settings
from core.database import connect
from core.models import db
from tests.sip import callkit as ck

# test_browser's Chromium (one per module) and its per-test reset, as fixtures here too.
chromium = test_browser.chromium
browser = test_browser.browser

TALK_MS = 6000
LIVE_ROWS = """return [...document.querySelectorAll('#active-calls tbody tr')].map(tr => ({
    id: tr.id, state: tr.dataset.state, text: tr.innerText,
    caller: tr.querySelector('td[data-label=Caller] .key')?.textContent,
    callee: tr.querySelector('td[data-label=Callee] .key')?.textContent,
    badge: tr.querySelector('td[data-label=State] .badge')?.textContent}))"""


@pytest.fixture(autouse=True)
def _logs_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "WORK_ROOT", tmp_path)


@pytest.fixture
def screenshots(tmp_path) -> Path:
    directory = tmp_path / "screenshots"
    directory.mkdir()
    return directory


@contextmanager
def sipd_and_panel(tmp_path, numbers=("1001", "1002"), **env):
    """(sipd, panel) on the same database, the admin made with core.accounts; the panel
    hangs up through sipd's control socket."""
    # A short directory of its own: a Unix socket's path has ~100 bytes at most.
    run_dir = Path(tempfile.mkdtemp(prefix="pbx-run-"))
    server = ck.SipdServer(tmp_path, numbers=numbers, PBX_RUN_DIR=str(run_dir), **env)
    connect(load_settings({"PBX_DB": str(server.db_path), "PBX_REALM": ck.REALM}))
    create_admin(*ADMIN)
    db.close()
    server.start()
    panel = None
    try:
        panel = PanelProcess(server.db_path, tmp_path, free_tcp_port(),
                             PBX_CONTROL_SOCKET=str(run_dir / "sipd.sock")).start()
        yield server, panel
    finally:
        if panel is not None:
            assert panel.stop() == 0, panel.log()
        server.stop()
        # sipd's log kept with the test's files (pytest keeps the last runs'), not in /tmp.
        (tmp_path / "sipd.log").write_text(server.log())
        shutil.rmtree(server.daemon.run_dir, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
def pbx(tmp_path):
    with sipd_and_panel(tmp_path, PBX_RING_TIMEOUT="10") as both:
        yield both


def live_rows(driver) -> list[dict]:
    # Read in one script: the page redraws cells every 2 s, so elements can go stale.
    return driver.execute_script(LIVE_ROWS)


def wait_until(driver, predicate, timeout: float, what: str, story=lambda: ""):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(predicate)
    except TimeoutException as error:
        raise AssertionError(f"{what} not within {timeout} s; live rows: "
                             f"{live_rows(driver)}\n{story()}") from error


def talking_row(driver, caller: str, callee: str) -> dict | bool:
    for row in live_rows(driver):
        if (row["state"] == "answered" and row["badge"] == "talking"
                and (row["caller"], row["callee"]) == (caller, callee)):
            return row
    return False


def history_row(driver, call_id: int) -> dict[str, str]:
    """The history row of the call, by column."""
    return driver.execute_script(
        "return Object.fromEntries([...document.getElementById(arguments[0]).cells]"
        ".map(td => [td.dataset.label, td.innerText.trim()]))", f"call-{call_id}")


def test_live_call_then_its_record_then_hung_up_from_the_page(browser, pbx, screenshots):
    from selenium.webdriver.common.by import By

    server, panel = pbx
    log_in(browser, panel)
    browser.get(panel.url + "/calls/active")
    assert browser.find_element(By.ID, "no-calls").is_displayed()
    browser.execute_script("window.samePage = true")

    # 1002 registers and waits to answer two calls; 1001 calls it and talks ~6 s.
    callee = ck.callee(server.address, "1002", "callee_answer.xml", ring_ms=300,
                       calls=2, timeout=40)
    caller = ck.caller(server.address, "1001", "1002", "caller_call.xml",
                       duration_ms=TALK_MS, timeout=20)
    try:
        row = wait_until(browser, lambda d: talking_row(d, "1001", "1002"), 10,
                         "the call 1001 -> 1002 talking on the live page",
                         lambda: ck.explain(caller, callee, server=server))
        # Seen live: the caller has not hung up yet, and the record is still open.
        assert caller.running(), ck.explain(caller, callee, server=server)
        call_id = int(row["id"].removeprefix("live-"))
        record = next(r for r in server.calls() if r["id"] == call_id)
        assert (record["caller"], record["callee"]) == ("1001", "1002"), record
        assert record["ended_at"] is None and record["answered_at"] is not None, record
        assert browser.find_element(By.ID, "active-summary").text == "1 live call"
        assert not browser.find_element(By.ID, "no-calls").is_displayed()
        save_screenshot(browser, screenshots / "live-call.png")

        # The caller hangs up (BYE after the talk time); the page drops the call by itself.
        assert caller.wait(timeout=20) == 0, ck.explain(caller, callee, server=server)
        assert caller.statuses("BYE") == [200], caller.flow()
        wait_until(browser, lambda d: d.find_element(By.ID, "no-calls").is_displayed(), 6,
                   "the live page emptied after the caller hung up")
        assert not browser.find_elements(By.ID, f"live-{call_id}")
        assert browser.find_element(By.ID, "active-summary").text == "0 live calls"
        assert browser.execute_script("return window.samePage") is True

        # The history has its record.
        browser.get(panel.url + "/calls/")
        cells = history_row(browser, call_id)
        assert cells["Caller"] == "1001" and cells["Callee"] == "1002", cells
        assert cells["Outcome"] == "ANSWERED", cells
        assert cells["Hung up by"] == "caller", cells
        talk = re.fullmatch(r"(\d+) s", cells["Talk time"])
        assert talk and 0 < int(talk.group(1)), cells
        assert TALK_MS / 1000 - 1 <= int(talk.group(1)) <= TALK_MS / 1000 + 3, cells
        record = next(r for r in server.calls() if r["id"] == call_id)
        assert record["disposition"] == "ANSWERED" and record["hangup_by"] == "caller", record
        save_screenshot(browser, screenshots / "history.png")

        # A second call, hung up from the page: sipd sends each phone a BYE.
        browser.get(panel.url + "/calls/active")
        held = ck.caller(server.address, "1001", "1002", "caller_hung_up.xml", timeout=20)
        try:
            row = wait_until(browser, lambda d: talking_row(d, "1001", "1002"), 10,
                             "the second call talking on the live page",
                             lambda: ck.explain(held, callee, server=server))
            second_id = int(row["id"].removeprefix("live-"))
            assert second_id != call_id
            button = browser.find_element(
                By.XPATH, f"//tr[@id='live-{second_id}']//a[.='Hang up']")
            click_and_load(browser, button)
            assert "Hang up this call?" in browser.page_source
            click_and_load(browser, browser.find_element(
                By.XPATH, "//*[@id='confirm-hangup']//button[.='Hang up']"))
            assert "The call 1001 → 1002 is being hung up." in browser.page_source
            ck.finish(held, callee, server=server, timeout=15)
        finally:
            held.stop()
        assert held.requests() == ["BYE"], held.flow()
        assert callee.requests() == ["INVITE", "ACK", "BYE"] * 2, callee.flow()
        wait_until(browser, lambda d: d.find_element(By.ID, "no-calls").is_displayed(), 6,
                   "the live page emptied after the hang-up")

        browser.get(panel.url + "/calls/")
        cells = history_row(browser, second_id)
        assert cells["Outcome"] == "ANSWERED" and cells["Hung up by"] == "system", cells
        assert cells["Reason"] == "hung up by an admin", cells
        browser.get(panel.url + "/security/audit")
        assert "hung up call 1001 → 1002" in browser.find_element(By.ID, "audit").text
        assert_no_console_errors(browser)
    finally:
        caller.stop()
        callee.stop()

"""The dashboard in real headless Chromium: a login lands on it and it shows the PBX as it is.

A real sipd and the panel as a real process share one SQLite database. The
database holds an office's week, written in the shape its writers use: twelve
extensions, calls in working hours, registration samples of the last day with
a twenty-minute gap (sipd was down), a scanner's failed authentications and
its ban. sipd itself takes a sample at start and writes its service row; a
phone (sipp) registers for real, and the admin mistypes the password once
before logging in, which is a real failed panel login. Every figure on the
page is then checked against what was written, the charts are drawn at the
page's width, and the page fits a phone. Screenshots at desktop and phone
width go to $PBX_SCREENSHOTS if set (docs/screenshots/ holds the last ones),
else a temporary directory.
Chromium, chromedriver or sipp missing is a failure, never a skip.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
import test_browser
from panel_testing import ADMIN, REALM, PanelProcess, Rows, free_tcp_port
from test_browser import (
    PHONE,
    assert_fits_a_phone,
    assert_no_console_errors,
    click_and_load,
    save_screenshot,
)

from app.dashboard import figures
from core.accounts import create_admin
from core.config import load_settings
from core.database import connect
from core.models import Ban, RegistrationSample, db
from tests.support import Sipd, free_port, inject_row, run_sipp

chromium = test_browser.chromium
browser = test_browser.browser

PASSWORD = "correct-horse-9"
NAMES = ["Reception", "Accounts", "Sales 1", "Sales 2", "Support", "Warehouse", "Director",
         "Meeting room", "Kitchen", "Lab", "Workshop", "Spare"]


@pytest.fixture
def screenshots(tmp_path) -> Path:
    directory = Path(os.environ.get("PBX_SCREENSHOTS") or tmp_path / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def office_week(rows: Rows, now: float, rng: random.Random) -> list[tuple[float, bool]]:
    """Calls in working hours over the last six and a half days: (start, answered)."""
    calls = []
    for day in range(7):
        midnight = figures.local_midnight(now - day * 86400)
        for hour in range(8, 19):
            for _ in range(rng.randrange(1, 9 if 9 <= hour <= 16 else 4)):
                start = midnight + hour * 3600 + rng.random() * 3600
                if now - 6.5 * 86400 < start < now - 120:
                    calls.append((start, rng.random() > 0.2))
    for start, answered in calls:
        rows.call(f"10{rng.randrange(1, 13):02d}", f"10{rng.randrange(1, 13):02d}",
                  started_at=start, answered_at=start + 6 if answered else None,
                  ended_at=start + (rng.randrange(20, 400) if answered else 25),
                  disposition="ANSWERED" if answered else "NO ANSWER",
                  state="answered" if answered else "ended")
    return calls


def samples_of_a_day(now: float, rng: random.Random) -> None:
    """What sipd sampled over the last day, with a gap of 20 minutes 5 h ago."""
    for slot in range(288, 0, -1):
        taken = (int(now // 300) - slot) * 300 + 12
        if 5 * 3600 - 600 < now - taken < 5 * 3600 + 600:
            continue
        hour = time.localtime(taken).tm_hour
        count = (9 if 8 <= hour < 19 else 3) - rng.randrange(2)
        RegistrationSample.create(taken_at=taken, extensions=count, bindings=count + 1)


@pytest.fixture
def office(tmp_path):
    """The database, filled; returns (path, what was written)."""
    path = tmp_path / "pbx.db"
    connect(load_settings({"PBX_DB": str(path), "PBX_REALM": REALM}))
    create_admin(*ADMIN)
    rows, rng, now = Rows(), random.Random(15), time.time()
    ext = [rows.extension(f"10{i:02d}", name=NAMES[i - 1], password=PASSWORD,
                          enabled=i != 12) for i in range(1, 13)]
    # Seven phones registered besides 1001 (sipp registers it below), one of them twice.
    for i in range(1, 8):
        rows.binding(ext[i], contact=f"sip:{ext[i].number}@192.0.2.{10 + i}:5062",
                     expires_at=now + 3600, call_id=f"reg-{i}")
    rows.binding(ext[1], contact="sip:1002@192.0.2.40:5062", expires_at=now + 3600,
                 user_agent="Linphone/5.2", call_id="reg-1b")
    calls = office_week(rows, now, rng)
    samples_of_a_day(now, rng)
    for minutes in (130, 128, 127, 125, 124, 122, 121):  # a scanner, then its ban
        rows.attempt(rng.choice(["100", "1000", "admin"]), source_host="203.0.113.50",
                     user_agent="friendly-scanner", created_at=now - minutes * 60,
                     reason="no such extension")
    Ban.create(address="203.0.113.50", reason="5 failed authentications in 600 s", failures=5,
               offences=1, created_at=now - 121 * 60, expires_at=now + 3600)
    db.close()
    return path, calls


def figure(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return " ".join(driver.find_element(By.ID, element_id).text.split())


def test_log_in_land_on_the_dashboard_and_read_it(browser, office, tmp_path, screenshots):
    from selenium.webdriver.common.by import By

    db_path, calls = office
    with Sipd(db_path, PBX_SIP_WORKERS="0") as sipd:
        local_port = free_port()
        result = run_sipp("register_auth.xml", sipd.address, local_port=local_port, timeout=15,
                          inject=[inject_row("1001", PASSWORD)])
        assert result.returncode == 0, result.explain() + sipd.log()
        # A call in progress (written after sipd started, which closes those of a crash).
        connect(load_settings({"PBX_DB": str(db_path), "PBX_REALM": REALM}), migrate=False)
        live_start = time.time() - 40
        Rows().call("1001", "1003", live=True, started_at=live_start,
                    answered_at=live_start + 5)
        db.close()
        panel = PanelProcess(db_path, sipd.run_dir, free_tcp_port()).start()
        try:
            # Sent to log in, a wrong password first (a real failed panel login).
            browser.get(panel.url + "/")
            assert "/login?next=" in browser.current_url
            browser.find_element(By.NAME, "username").send_keys(ADMIN[0])
            browser.find_element(By.NAME, "password").send_keys("not-the-password")
            click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "input[type=submit]"))
            assert "Wrong user name or password." in browser.page_source
            browser.find_element(By.NAME, "username").clear()
            browser.find_element(By.NAME, "username").send_keys(ADMIN[0])
            browser.find_element(By.NAME, "password").send_keys(ADMIN[1])
            now = time.time()
            click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "input[type=submit]"))
            assert browser.current_url == panel.url + "/"
            assert browser.find_element(By.TAG_NAME, "h1").text == "Dashboard"
            current = browser.find_element(By.CSS_SELECTOR, ".nav a[aria-current=page]")
            assert current.text == "Dashboard"

            today = [(start, answered) for start, answered in calls
                     if start >= figures.local_midnight(now)]
            answered_today = sum(1 for _, answered in today if answered) + 1  # the live one
            assert figure(browser, "tile-registered") == (
                "Registered extensions 8 / 12 9 bindings, 1 disabled")
            assert figure(browser, "tile-live") == "Calls now 1 1 talking, 0 ringing"
            assert figure(browser, "tile-today") == (
                f"Calls today {len(today) + 1} {answered_today} answered, "
                f"{len(today) + 1 - answered_today} not answered")
            assert figure(browser, "tile-failures") == "Failed logins, 24 h 8 7 SIP, 1 panel"
            assert figure(browser, "tile-bans") == "Bans, 24 h 1 1 address banned now"
            assert figure(browser, "calls-summary").startswith(
                f"{len(calls) + 1} calls in the last 7 days; the busiest hour was")

            # The charts are drawn, at the card's width, with a column per busy hour.
            week = browser.find_element(By.ID, "calls-chart")
            assert week.size["width"] > 900, week.size
            hours_with_calls = len({figures.local_hour_start(start)
                                    for start, _ in [*calls, (live_start, True)]})
            assert len(week.find_elements(By.CSS_SELECTOR, "rect.bar")) == hours_with_calls
            # The 20 minutes without samples are 3 or 4 slots, depending on where they
            # fall; one more if a slot began between the fixture and sipd's first sample.
            day = browser.find_element(By.ID, "registrations-chart")
            assert len(day.find_elements(By.CSS_SELECTOR, "rect.nodata")) in (3, 4, 5)
            assert "sipd was not running" in figure(browser, "registrations-summary")

            # The services as they are: this sipd, its relay, this panel.
            sipd_row = browser.find_element(By.ID, "service-sipd")
            assert sipd_row.get_attribute("data-state") == "running", sipd_row.text
            assert f"UDP/TCP 127.0.0.1:{sipd.port}, pid {sipd.process.pid}" in sipd_row.text
            assert "differs" not in sipd_row.text
            relay = browser.find_element(By.ID, "service-relay")
            assert relay.get_attribute("data-state") == "running", relay.text
            assert f"listening on 127.0.0.1:{panel.port}" in figure(browser, "service-panel")
            assert "schema" in figure(browser, "storage")

            save_screenshot(browser, screenshots / "dashboard-desktop.png")
            save_screenshot(browser, screenshots / "dashboard-phone.png", PHONE)
            assert_fits_a_phone(browser)
            assert_no_console_errors(browser)

            # A tile leads to its details.
            click_and_load(browser, browser.find_element(By.ID, "tile-registered"))
            assert browser.current_url == panel.url + "/registrations/"
            assert f"sip:1001@127.0.0.1:{local_port}" in browser.page_source
        finally:
            assert panel.stop() == 0, panel.log()

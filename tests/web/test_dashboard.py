"""The dashboard (`/`): exact figures from rows at known times, in the office's time zone.

The panel's clock is injected (PANEL_CLOCK) and the process runs in
Asia/Tashkent (UTC+5, the office of issue 15), so "today" and the hours of the
charts are local and every count is known in advance. Rows are written in the
shape their writers use (panel_testing.Rows for sipd's; core.models for the
rest). Services: sipd's own record, looked up against real processes.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from html import unescape
from pathlib import Path

import pytest
from panel_testing import make_app

from app.dashboard import figures, timelines
from core import migrations, samples
from core.models import AuditEntry, Ban, RegistrationSample, Service, db
from core.version import code_version


@pytest.fixture
def zone():
    """Run the test in a given TZ (default Asia/Tashkent), then put the old one back."""
    old = os.environ.get("TZ")

    def use(name: str = "Asia/Tashkent") -> None:
        os.environ["TZ"] = name
        time.tzset()

    use()
    yield use
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def at(hour, minute=0, second=0, day=12, month=3):
    """A local time in March 2025 (Wednesday the 12th is "today")."""
    return time.mktime((2025, month, day, hour, minute, second, 0, 0, -1))


@pytest.fixture
def now(zone):
    return at(10, 30)


@pytest.fixture
def app(tmp_path, now):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    app = make_app(tmp_path, PANEL_CLOCK=lambda: now, RUN_DIR=str(run_dir))
    yield app
    if not db.is_closed():
        db.close()


def text_of(html: str, element_id: str) -> str:
    """The text of the element with this id (up to its closing tag of the same name)."""
    match = re.search(rf'<(\w+)[^>]* id="{element_id}"[^>]*>(.*?)</\1>', html, re.S)
    assert match, f"no #{element_id} on the page"
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", match.group(2))).split())


def fill(rows, now):
    """Rows at known times; the comments say what each must count for."""
    ext = {number: rows.extension(number) for number in ("1001", "1002", "1003", "1004")}
    rows.extension("1005", enabled=False)
    # Registered: 1001 (two phones) and 1002; 1003's binding expired at `now`.
    rows.binding(ext["1001"], expires_at=now + 300)
    rows.binding(ext["1001"], contact="sip:1001@192.0.2.11:5062", expires_at=now + 60)
    rows.binding(ext["1002"], expires_at=now + 1)
    rows.binding(ext["1003"], expires_at=now)
    # Calls now: one talking, one ringing. Today (since 00:00): those two and three ended.
    rows.call("1001", "1002", live=True, started_at=at(10, 29), answered_at=at(10, 29, 5))
    rows.call("1003", "1004", live=True, state="ringing", started_at=at(10, 29, 30),
              answered_at=None)
    rows.call(started_at=at(0, 0, 0), answered_at=at(0, 0, 5), ended_at=at(0, 1))
    rows.call(started_at=at(9, 15), answered_at=None, ended_at=at(9, 15, 30),
              disposition="NO ANSWER", state="ended")
    rows.call(started_at=at(10, 5), answered_at=at(10, 5, 5), ended_at=at(10, 6))
    # Not today, but in the week: a second before midnight, and the first second of the
    # week's first hour (11:00 on Wednesday the 5th); one second before it is not.
    rows.call(started_at=at(23, 59, 59, day=11), answered_at=None, ended_at=at(0, 0, 30))
    rows.call(started_at=at(11, 0, 0, day=5), answered_at=None, ended_at=at(11, 1, day=5))
    rows.call(started_at=at(10, 59, 59, day=5), answered_at=None, ended_at=at(11, 1, day=5))
    # Failed SIP logins in 24 h: two (successes and challenges are not failures).
    rows.attempt(created_at=now - 100)
    rows.attempt(created_at=now - 86399)
    rows.attempt(created_at=now - 86401)
    rows.attempt(created_at=now - 5, result="success", reason="")
    rows.attempt(created_at=now - 5, result="challenge", reason="")
    # Failed panel logins in 24 h: one.
    AuditEntry.create(created_at=now - 3600, action="login_failed", target="admin")
    AuditEntry.create(created_at=now - 86401, action="login_failed", target="admin")
    AuditEntry.create(created_at=now - 10, actor="admin", action="login", target="admin")
    # Bans made in 24 h: two; in force now: two addresses (one of them an old ban).
    ban = {"reason": "5 failed authentications in 600 s", "failures": 5, "offences": 1}
    Ban.create(address="203.0.113.1", created_at=now - 600, expires_at=now + 3000, **ban)
    Ban.create(address="203.0.113.2", created_at=now - 7200, expires_at=now + 3000,
               lifted_at=now - 3600, lifted_by="admin", **ban)
    Ban.create(address="203.0.113.3", created_at=now - 2 * 86400, expires_at=now + 86400, **ban)
    Ban.create(address="203.0.113.4", created_at=now - 86405, expires_at=now - 5, **ban)
    # Registration samples: 10:10, (none at 10:15: sipd was down), 10:20, 10:25.
    for when, count in ((at(10, 10, 10), 1), (at(10, 20, 10), 2), (at(10, 25, 10), 3)):
        RegistrationSample.create(taken_at=when, extensions=count, bindings=count + 1)


def test_the_figures_are_exact(admin_client, rows, now, process):
    fill(rows, now)
    sipd_row(now, pid=process("sipd"))
    page = admin_client.get("/")
    assert page.status_code == 200
    html = page.data.decode()
    assert text_of(html, "tile-registered") == "Registered extensions 2 / 5 3 bindings, 1 disabled"
    assert text_of(html, "tile-live") == "Calls now 2 1 talking, 1 ringing"
    assert text_of(html, "tile-today") == "Calls today 5 3 answered, 2 not answered"
    assert text_of(html, "tile-failures") == "Failed logins, 24 h 3 2 SIP, 1 panel"
    assert text_of(html, "tile-bans") == "Bans, 24 h 2 2 addresses banned now"
    # Each figure leads to the page with its details; today's calls to today's history.
    assert 'id="tile-today" href="/calls/?since=2025-03-12"' in html
    assert 'id="tile-registered" href="/registrations/"' in html
    assert text_of(html, "calls-summary") == (
        "7 calls in the last 7 days; the busiest hour was Wed 12 Mar 10:00 with 3.")
    assert text_of(html, "registrations-summary").startswith(
        "Between 1 (10:10) and 3 (10:25) extensions registered. Sampling began at 10:10."
        " No samples for 5 min: sipd was not running.")


def test_calls_per_hour_over_the_week(app, rows, now):
    with app.app_context(), db.connection_context():
        fill(rows, now)
        hours = figures.calls_per_hour(now)
    assert len(hours) == 168
    assert hours[0].start == at(11, 0, day=5) and hours[-1].start == at(10, 0)
    counted = {time.strftime("%d %H:%M", time.localtime(h.start)): h.value
               for h in hours if h.value}
    assert counted == {"05 11:00": 1, "11 23:00": 1, "12 00:00": 1, "12 09:00": 1,
                       "12 10:00": 3}


def test_the_charts_on_the_page(admin_client, rows, now):
    fill(rows, now)
    html = admin_client.get("/").data.decode()
    calls = re.search(r'<svg[^>]* id="calls-chart".*?</svg>\s*</section>', html, re.S).group(0)
    titles = re.findall(r'<rect class="bar"[^>]*><title>([^<]+)</title>', calls)
    assert titles == [
        "Wed 05 Mar, 11:00–12:00: 1 call", "Tue 11 Mar, 23:00–00:00: 1 call",
        "Wed 12 Mar, 00:00–01:00: 1 call", "Wed 12 Mar, 09:00–10:00: 1 call",
        "Wed 12 Mar, 10:00–11:00: 3 calls"]
    # A line at each of the week's seven midnights; the days with room are named.
    assert calls.count('class="mark"') == 7
    assert re.findall(r'class="tick[^"]*"[^>]*>([^<]+)<', calls) == [
        "Wed 05", "Thu 06", "Fri 07", "Sat 08", "Sun 09", "Mon 10", "Tue 11", "Wed 12"]
    registrations = re.search(r'<svg[^>]* id="registrations-chart".*?</svg>\s*</section>',
                              html, re.S).group(0)
    assert re.findall(r'<rect class="bar"[^>]*><title>([^<]+)</title>', registrations) == [
        "10:10: 1 extension registered", "10:20: 2 extensions registered",
        "10:25: 3 extensions registered"]
    gaps = re.findall(r'<rect class="nodata"[^>]*><title>([^<]+)</title>', registrations)
    assert gaps.count("10:15: no sample (sipd was not running)") == 1
    assert gaps.count("10:05: no sample (sampling had not begun)") == 1
    assert len(gaps) == 288 - 3


def test_the_last_slot_waits_for_its_late_sample(app, now):
    """sipd samples on a 30 s timer: a slot that began under a minute ago is not yet
    counted as missing."""
    with app.app_context(), db.connection_context():
        early = figures.registrations_per_slot(at(10, 25, 50))
        later = figures.registrations_per_slot(at(10, 26, 1))
    assert time.strftime("%H:%M", time.localtime(early[-1].start)) == "10:20"
    assert time.strftime("%H:%M", time.localtime(later[-1].start)) == "10:25"
    assert len(early) == len(later) == 288


def test_an_empty_pbx(admin_client):
    html = admin_client.get("/").data.decode()
    assert text_of(html, "tile-registered") == "Registered extensions 0 / 0 0 bindings"
    assert text_of(html, "calls-summary") == "No calls in the last 7 days."
    assert text_of(html, "registrations-summary").startswith("No samples in the last 24 hours.")
    assert 'id="registrations-chart"' not in html
    assert text_of(html, "service-sipd").startswith("sipd never started with this database")


def test_login_lands_on_the_dashboard_for_viewers_too(client, auth):
    response = client.get("/")
    assert response.status_code == 302 and response.location == "/login?next=%2F"
    response = auth.login_viewer()
    assert response.status_code == 302 and response.location == "/"
    html = client.get("/").data.decode()
    assert "<h1>Dashboard</h1>" in html
    assert '<a href="/" aria-current="page">Dashboard</a>' in html
    # Nothing to change here: the only form is the logout button.
    assert html.count("<form") == 1 and 'action="/logout"' in html


# -- services ---------------------------------------------------------------------------


@pytest.fixture
def process(tmp_path):
    """A live process whose arguments name a program, as `python -m sipd` does."""
    started = []

    def start(program: str) -> int:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", program])
        started.append(child)
        # Until the kernel shows the new program's arguments (under load the page was
        # once read before: the sipd looked "down").
        deadline = time.monotonic() + 10
        while program.encode() not in Path(f"/proc/{child.pid}/cmdline").read_bytes().split(
                b"\0") and time.monotonic() < deadline:
            time.sleep(0.01)
        return child.pid

    yield start
    for child in started:
        child.kill()
        child.wait()


def gone_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass", "sipd"])
    child.wait()
    return child.pid


def sipd_row(now, **fields):
    values = {"name": "sipd", "host": socket.gethostname(), "pid": 1, "version": code_version(),
              "started_at": now - 7200, "seen_at": now - 10, "stopped_at": None,
              "detail": "UDP/TCP 0.0.0.0:5070"}
    values.update(fields)
    return Service.create(**values)


@pytest.mark.parametrize(("fields", "state", "words"), [
    ({"pid": "live"}, "running", "running since 2025-03-12 08:30:00"),
    ({"pid": "gone"}, "down", "not running it ended without stopping (killed or crashed);"
                              " last seen 10 s ago"),
    ({"pid": "live", "seen_at": "stale"}, "silent", "not responding last seen 3 min 20 s ago"),
    ({"host": "node-2.example"}, "running", "running since"),
    ({"host": "node-2.example", "seen_at": "stale"}, "silent",
     "not responding last seen 3 min 20 s ago (on node-2.example)"),
    ({"pid": "live", "stopped_at": "recent"}, "stopped", "stopped at 2025-03-12 10:29:00"),
])
def test_sipd_state(admin_client, now, process, fields, state, words):
    values = dict(fields)
    if values.get("pid") == "live":
        values["pid"] = process("sipd")
    elif values.get("pid") == "gone":
        values["pid"] = gone_pid()
    if values.get("seen_at") == "stale":
        values["seen_at"] = now - 200
    if values.get("stopped_at") == "recent":
        values["stopped_at"] = now - 60
    sipd_row(now, **values)
    html = admin_client.get("/").data.decode()
    assert f'id="service-sipd" data-state="{state}"' in html
    assert words in text_of(html, "service-sipd")


def test_a_reused_pid_is_not_sipd(admin_client, now, process):
    sipd_row(now, pid=process("something-else"))
    assert 'id="service-sipd" data-state="down"' in admin_client.get("/").data.decode()


def test_live_calls_left_by_a_stopped_sipd_say_so(admin_client, rows, now):
    rows.call(live=True, started_at=now - 60, answered_at=now - 55)
    sipd_row(now, stopped_at=now - 30)
    html = admin_client.get("/").data.decode()
    assert text_of(html, "tile-live") == (
        "Calls now 1 1 talking, 0 ringing (left from before sipd stopped)")


def test_versions_and_the_media_relay(admin_client, app, now, process):
    sipd = process("sipd")
    sipd_row(now, pid=sipd, version="0123456789ab")
    run_dir = app.config["PBX_SETTINGS"].run_dir
    relay = process("sipd.media")
    with open(os.path.join(run_dir, "media-relay.pid"), "w") as handle:
        handle.write(f"{relay} {sipd}\n")
    html = admin_client.get("/").data.decode()
    assert "0123456789ab differs from the panel" in text_of(html, "service-sipd")
    assert f"UDP/TCP 0.0.0.0:5070, pid {sipd}" in text_of(html, "service-sipd")
    assert text_of(html, "service-relay") == (
        f"Media relay running 0123456789ab started by sipd, pid {relay}")
    assert text_of(html, "service-panel").startswith("Panel running since")
    assert f"{code_version()} listening on" in text_of(html, "service-panel")
    # A pid file left behind by a relay that is gone.
    with open(os.path.join(run_dir, "media-relay.pid"), "w") as handle:
        handle.write(f"{gone_pid()} {sipd}\n")
    html = admin_client.get("/").data.decode()
    assert text_of(html, "service-relay").startswith("Media relay not running its pid file remains")


def test_storage(admin_client, app):
    html = admin_client.get("/").data.decode()
    path = app.config["PBX_SETTINGS"].db_path
    with app.app_context():
        storage = figures.storage(path)
    assert storage.database_bytes == sum(
        os.stat(path + suffix).st_size for suffix in ("", "-wal", "-shm")
        if os.path.exists(path + suffix))
    assert storage.database_bytes > 0 and 0 < storage.disk_free <= storage.disk_total
    schema = max(number for number, _ in migrations.available())
    assert f"{path} · schema {schema}" in text_of(html, "storage")
    assert "free of" in text_of(html, "disk-free")


# -- the local calendar -----------------------------------------------------------------


def test_hours_in_a_zone_half_an_hour_off(zone):
    zone("Asia/Kolkata")  # UTC+5:30
    moment = time.mktime((2025, 3, 12, 10, 45, 0, 0, 0, -1))
    assert time.localtime(figures.local_hour_start(moment))[3:6] == (10, 0, 0)
    assert figures.local_midnight(moment) == time.mktime((2025, 3, 12, 0, 0, 0, 0, 0, -1))


def test_a_week_across_a_change_of_summer_time(zone):
    zone("Europe/Berlin")  # 30 March 2025: 02:00 becomes 03:00, a day of 23 hours
    now = time.mktime((2025, 4, 2, 12, 0, 0, 0, 0, -1))
    starts = [figures.local_hour_start(now) - i * 3600 for i in range(167, -1, -1)]
    ticks = timelines.day_ticks(starts)
    lines = [t.at for t in ticks if t.line]
    widths = [b - a for a, b in zip(lines, lines[1:], strict=False)]
    assert widths == [24, 24, 24, 23, 24, 24]
    named = [t.text for t in ticks if t.text]
    assert named == ["Wed 26", "Thu 27", "Fri 28", "Sat 29", "Sun 30", "Mon 31", "Tue 01", "Wed 02"]


def test_samples_are_taken_once_per_slot_and_kept_a_week(app, rows, now):
    with app.app_context(), db.connection_context():
        extension = rows.extension("1001")
        rows.binding(extension, expires_at=now + 600)
        rows.binding(extension, contact="sip:1001@192.0.2.12:5062", expires_at=now + 600)
        RegistrationSample.create(taken_at=now - samples.KEEP - 1, extensions=9, bindings=9)
        sampler = samples.Sampler()
        taken = [sampler.tick(now + offset) for offset in (0, 30, 60, 270, 300, 330)]
        assert [s is not None for s in taken] == [True, False, False, False, True, False]
        assert [(s.extensions, s.bindings) for s in taken if s] == [(1, 2), (1, 2)]
        assert [row.taken_at for row in RegistrationSample.select()] == [now, now + 300]

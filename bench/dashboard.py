"""The dashboard's page time on a large database (issue 15, item 5).

1. Fills a fresh SQLite file (migrated by core/, as pbxctl init does) with
   10,000 extensions, 8,000 of them registered (12,000 live bindings),
   100,000 calls over 60 days (office hours busier, 15 % not answered, a few
   live), 200 authentication attempts per extension (2,000,000 rows, the most
   sipd keeps: sipd/store.py) of which 40,000 failures, 5,000 bans, 2,000
   failed panel logins, and the registration samples sipd takes (8 days).
2. Asks the panel for `/` through Flask's test client, logged in as an admin,
   `--requests` times; each request opens its own database connection, as in
   production. Prints the median and the 95th percentile, the time of each
   figure's query alone, and of the count sipd makes for a registration sample.

    .venv/bin/python bench/dashboard.py [--calls 100000] [--extensions 10000] [--requests 30]
    .venv/bin/python bench/dashboard.py --keep var/dashboard-demo.db   # keep the file
    .venv/bin/python bench/dashboard.py --reuse var/dashboard-demo.db  # time it again

No network at all: the panel runs in this process.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from werkzeug.security import generate_password_hash  # noqa: E402

from core.config import load_settings  # noqa: E402
from core.database import connect  # noqa: E402
from core.models import (  # noqa: E402
    Admin,
    AuditEntry,
    AuthAttempt,
    Ban,
    Binding,
    Call,
    Extension,
    RegistrationSample,
    db,
)

REALM = "pbx.bench"
ADMIN = ("admin", "bench-password-1")
DAY = 86400


def _batches(rows, size=5000):
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _insert(model, rows) -> None:
    with db.atomic():
        for batch in _batches(rows, 32000 // len(rows[0])):
            model.insert_many(batch).execute()


def _office_time(rng: random.Random, now: float, days: int) -> float:
    """A moment in the last `days` days, mostly in working hours."""
    day = rng.randrange(days)
    hour = rng.choice([8, 9, 9, 10, 10, 10, 11, 11, 12, 13, 14, 14, 15, 15, 16, 16, 17, 18,
                       rng.randrange(24)])
    moment = now - day * DAY
    midnight = moment - (moment % DAY)
    at = midnight + hour * 3600 + rng.random() * 3600
    return at if at < now else at - DAY  # today's later hours have not come yet


def fill(now: float, extensions: int, calls: int, seed: int = 15) -> None:
    rng = random.Random(seed)
    Admin.create(username=ADMIN[0], password_hash=generate_password_hash(
        ADMIN[1], method="pbkdf2:sha256:1000"))
    numbers = [str(100000 + i) for i in range(extensions)]
    _insert(Extension, [
        {"number": n, "name": f"User {n}", "enabled": i % 50 != 0, "realm": REALM,
         "ha1_md5": "0" * 32, "ha1_sha256": "0" * 64, "created_at": now - 90 * DAY,
         "updated_at": now - 90 * DAY}
        for i, n in enumerate(numbers)])
    ids = [e.id for e in Extension.select(Extension.id).order_by(Extension.id)]
    bindings = []
    for i, extension_id in enumerate(ids[: extensions * 4 // 5]):
        for k in range(2 if i % 2 == 0 else 1):
            bindings.append({
                "extension": extension_id, "aor": f"sip:{numbers[i]}@{REALM}",
                "contact": f"sip:{numbers[i]}@198.51.100.{i % 250}:{5060 + k}",
                "source_host": f"198.51.100.{i % 250}", "source_port": 5060 + k,
                "transport": "UDP", "expires_at": now + rng.randrange(1800, 3600),
                "call_id": f"reg-{i}-{k}", "cseq": 7, "user_agent": "MicroSIP/3.21.3",
                "instance": "", "q": None, "registered_at": now - 3600,
                "updated_at": now - 60})
    _insert(Binding, bindings)
    call_rows = []
    for i in range(calls):
        started = _office_time(rng, now, 60)
        answered = rng.random() > 0.15
        live = i < 5
        call_rows.append({
            "call_id": f"call-{i}@bench", "caller": rng.choice(numbers),
            "caller_name": "", "callee": rng.choice(numbers), "caller_source": "",
            "callee_contact": "", "state": "answered" if answered else "ringing",
            "started_at": now - 30 if live else started,
            "answered_at": (now - 25 if live else started + 5) if answered else None,
            "ended_at": None if live else started + rng.randrange(10, 600),
            "disposition": None if live else ("ANSWERED" if answered else "NO ANSWER"),
            "hangup_by": None if live else "caller", "sip_status": None if live else 200,
            "reason": "", "caller_media": "", "callee_media": "", "codec": "PCMU/8000"})
    _insert(Call, call_rows)
    attempts = []
    for i, number in enumerate(numbers):
        for k in range(200):
            failed = k % 50 == 0
            attempts.append({
                "created_at": now - k * 300 - rng.random() * 300, "number": number,
                "method": "REGISTER", "source_host": f"198.51.100.{i % 250}",
                "source_port": 5060, "transport": "UDP", "user_agent": "MicroSIP/3.21.3",
                "result": "failure" if failed else "success",
                "reason": "wrong password" if failed else ""})
        if len(attempts) >= 200_000:
            _insert(AuthAttempt, attempts)
            attempts = []
    if attempts:
        _insert(AuthAttempt, attempts)
    _insert(Ban, [
        {"address": f"203.0.113.{i % 250}", "reason": "5 failed authentications in 600 s",
         "failures": 5, "offences": 1, "created_at": now - rng.random() * 60 * DAY,
         "expires_at": now - rng.random() * DAY + 3600, "lifted_at": None, "lifted_by": None}
        for i in range(5000)])
    _insert(AuditEntry, [
        {"created_at": now - rng.random() * 30 * DAY, "actor": "", "action": "login_failed",
         "target": "admin", "source": "203.0.113.9", "detail": ""}
        for _ in range(2000)])
    samples = []
    for slot in range(8 * 288):
        at = now - slot * 300
        hour = time.localtime(at).tm_hour
        samples.append({"taken_at": at, "extensions": 8000 - (1500 if hour < 7 else 0)
                        - rng.randrange(50), "bindings": 12000 - rng.randrange(80)})
    _insert(RegistrationSample, samples)


def _timed(function, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def _report(name: str, times: list[float]) -> None:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    print(f"{name:<28} median {statistics.median(times) * 1000:7.1f} ms"
          f"   p95 {p95 * 1000:7.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--extensions", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--keep", help="build the database at this path and keep it")
    parser.add_argument("--reuse", help="time a database built before with --keep (its"
                        " bindings stay live an hour, its samples and calls age)")
    args = parser.parse_args()

    path = Path(args.reuse or args.keep or Path(tempfile.mkdtemp()) / "pbx.db")
    if path.exists() != bool(args.reuse):
        print(f"{path} {'does not exist' if args.reuse else 'exists'}", file=sys.stderr)
        return 1
    settings = load_settings({"PBX_DB": str(path), "PBX_REALM": REALM})
    connect(settings)
    now = time.time()
    if not args.reuse:
        started = time.perf_counter()
        fill(now, args.extensions, args.calls)
        db.execute_sql("ANALYZE")
        print(f"Filled {path} in {time.perf_counter() - started:.0f} s "
              f"({path.stat().st_size / 1e6:.0f} MB)")
    db.close()

    from app import create_app
    from app.dashboard import figures
    from core import samples

    app = create_app({"TESTING": True, "SECRET_KEY": "bench-" + "k" * 40,
                      "WTF_CSRF_ENABLED": False}, settings=settings)
    client = app.test_client()
    client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]})
    page = client.get("/")
    assert page.status_code == 200, page.status_code
    html = page.data.decode()
    registered = args.extensions * 4 // 5
    assert f'{registered:,}<span class="of"> / {args.extensions:,}</span>' in html, \
        "the registered tile is not as filled"

    print(f"GET / ({len(html) / 1000:.0f} kB of HTML), {args.requests} requests:")
    _report("whole page", _timed(lambda: client.get("/"), args.requests))
    with app.app_context():
        for name, function in (
            ("extensions", lambda: figures.extensions(now)),
            ("live_calls", figures.live_calls),
            ("calls_today", lambda: figures.calls_today(now)),
            ("security", lambda: figures.security(now)),
            ("calls_per_hour", lambda: figures.calls_per_hour(now)),
            ("registrations_per_slot", lambda: figures.registrations_per_slot(now)),
            # What sipd pays on its housekeeping timer: the count behind a sample (every
            # 5 min; a sample adds one INSERT and a DELETE by index).
            ("sipd: live_counts", lambda: samples.live_counts(now)),
        ):
            db.connect(reuse_if_open=True)
            _report(name, _timed(function, args.requests))
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

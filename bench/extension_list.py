"""The panel's extension list with many extensions: bytes and seconds per page
(docs/security.md, probe finding 9: 100,000 extensions made a 32 MB page in 5.5 s).

    .venv/bin/python bench/extension_list.py --extensions 100000 --registered 2000

Flask's test client on a fresh SQLite file; no network at all.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "web"))

from panel_testing import REALM, make_app  # noqa: E402

from core.credentials import ha1_pair  # noqa: E402
from core.models import Binding, Extension, db  # noqa: E402


def fill(extensions: int, registered: int) -> None:
    now = time.time()
    rows = [{"number": str(200000 + i), "name": f"Staff {i}", "enabled": True,
             **ha1_pair(str(200000 + i), REALM, "correct-horse-1")} for i in range(extensions)]
    with db.atomic():
        for start in range(0, extensions, 500):
            Extension.insert_many(rows[start:start + 500]).execute()
        ids = [e.id for e in Extension.select(Extension.id).order_by(Extension.id)]
        step = max(1, extensions // max(1, registered))
        bindings = [{"extension": ids[i], "aor": f"sip:{200000 + i}@{REALM}",
                     "contact": f"sip:{200000 + i}@192.0.2.10:5062", "source_host": "192.0.2.10",
                     "source_port": 5062, "transport": "UDP", "expires_at": now + 3000,
                     "call_id": f"c{i}", "cseq": 1, "user_agent": "MicroSIP/3.21.3"}
                    for i in range(0, extensions, step)][:registered]
        for start in range(0, len(bindings), 500):
            Binding.insert_many(bindings[start:start + 500]).execute()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extensions", type=int, default=100000)
    parser.add_argument("--registered", type=int, default=2000)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="pbx-bench-list-"))
    try:
        app = make_app(workdir)
        with db.connection_context():
            fill(args.extensions, args.registered)
        client = app.test_client()
        client.post("/login", data={"username": "admin", "password": "admin-password-1"})
        print(f"{args.extensions} extensions, {args.registered} registered")
        for label, url in (("first page", "/extensions/"),
                           ("last page", f"/extensions/?page={args.extensions // 100}"),
                           ("search by name", "/extensions/?q=Staff%2099999"),
                           ("search by number", "/extensions/?q=2500")):
            started = time.perf_counter()
            response = client.get(url)
            seconds = time.perf_counter() - started
            print(f"  {label:18} {url:32} {response.status_code}  "
                  f"{len(response.data) / 1e6:8.3f} MB  {seconds:6.3f} s")
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

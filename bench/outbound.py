"""Outbound call setup rate: extensions -> sipd -> a trunk -> Kamailio as the phone
company -> the far phone, in the same run as Kamailio taking the same calls from
the same callers itself (issue 12, "Show": zero failed calls up to at least half
of Kamailio's rate).

The phone company is Kamailio 5.6 with bench/kamailio/proxy.cfg (auth_db digest,
tm, rr, usrloc in memory, 2 UDP workers); the far phone registers there as
200000 and answers every call (callee_answer.xml, RTP echoed). The callers are
--users sipp extensions running tests/sip/scenarios/caller_call.xml (INVITE, 407,
INVITE with digest, 180, 200, ACK, 2 s, BYE):
- kamailio: they call 200000 at Kamailio directly, as its subscribers;
- sipd:     they are sipd's extensions and dial 9200000; the outbound route
            "9|." (the 9 stripped) sends 200000 through the trunk "carrier" to
            Kamailio, where the trunk's digest account answers Kamailio's 407
            (sipd/trunks/outbound.py), the caller ID in P-Asserted-Identity and
            the From the trunk's user (Kamailio checks it against the account).
            The toll-fraud limits are set far above the load (the limits
            themselves are checked before each call all the same).
Kamailio runs through sipd's whole search (only sipd is restarted after a step
that was not clean). The search and what "clean" means are bench/calls.py's.

    .venv/bin/python bench/outbound.py
    .venv/bin/python bench/outbound.py --only sipd --json outbound.json

Traffic goes to 127.0.0.1 only; every step is bounded in calls and time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "kamailio"))
sys.path.insert(0, str(HERE.parent))

import calls  # noqa: E402
from benchlib import LOOPBACK, bench_users, loadavg, machine, users_csv  # noqa: E402

PREFIX = "9"
TRUNK_USER = "299999"  # the trunk's digest account at the phone company


class FarPhone(calls.Callees):
    """The far phone: registered at the phone company whoever the server under test is."""

    def __init__(self, workdir: Path, carrier: calls.Kamailio, password: str):
        super().__init__(workdir, {calls.CALLEE: password}, [calls.CALLEE], 0)
        self.carrier = carrier

    def start(self, target: str) -> None:
        super().start(f"{LOOPBACK}:{self.carrier.port}")


class OutboundSipd(calls.Sipd):
    """sipd with the trunk to `carrier`, the route 9|. and limits out of the way."""

    name = "sipd"

    def __init__(self, workdir: Path, users, rtp_ports: str, carrier: calls.Kamailio,
                 trunk_password: str):
        super().__init__(workdir, users, rtp_ports)
        from core.config import load_settings
        from core.database import connect
        from core.models import OutboundPolicy, OutboundRoute, OutboundRouteTrunk, Trunk

        database = connect(load_settings(self.env))
        big = 10 ** 9
        with database.atomic():
            trunk = Trunk.create(name="carrier", host=LOOPBACK, port=carrier.port,
                                 username=TRUNK_USER, password=trunk_password,
                                 from_domain=calls.REALM, caller_id_header="pai",
                                 keepalive_interval=0, max_calls=big)
            route = OutboundRoute.create(name="out", position=0, patterns=f"{PREFIX}|.")
            OutboundRouteTrunk.create(route=route, trunk=trunk, position=0)
            OutboundPolicy.insert(id=1, home_country="998", max_calls=big, calls_per_hour=big,
                                  minutes_per_hour=big, trunk_max_calls=big
                                  ).on_conflict_replace().execute()
        database.close()
        self.carrier = carrier
        self.detail += f"; outbound route {PREFIX}|. through trunk carrier (digest) to kamailio"

    def callee_numbers(self, fork: int) -> list[str]:
        return [calls.CALLEE]


def bench_outbound(server, callee, inf: Path, workdir: Path, args) -> calls.Result:
    result = calls.Result(server.name, detail=server.detail, command=" ".join(server.command))
    try:
        server.start()
        calls.search(server, callee, inf, workdir, args, result)
    except RuntimeError as error:
        result.error = str(error)
    finally:
        callee.stop()
        server.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200, help="calling extensions")
    parser.add_argument("--only", choices=("kamailio", "sipd"))
    parser.add_argument("--start-rate", type=float, default=20.0)
    parser.add_argument("--max-rate", type=float, default=4000.0)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of calls per step")
    parser.add_argument("--bisect", type=int, default=3)
    parser.add_argument("--max-p99-ms", type=float, default=1000.0)
    parser.add_argument("--budget", type=float, default=420.0,
                        help="seconds of search per server at most")
    parser.add_argument("--kamailio-children", type=int, default=2)
    parser.add_argument("--rtp-ports", default="10000-19999")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    args.fork = 1  # calls.table() reads it
    args.answer_after_ms = 0

    for tool in ("sipp", "kamailio"):
        if not shutil.which(tool):
            print(f"{tool} is not installed (make deps-bench)", file=sys.stderr)
            return 2
    info = machine()
    date = time.strftime("%Y-%m-%d %H:%M:%S %z")
    print(f"machine: {info['cores']} cores, {info['cpu']}, {info['memory']}; "
          f"{info['sipp']}; {info['kamailio']}; load {loadavg()}")
    print(f"sipd runs on: {info['sipd_python']}")
    print(f"date: {date}")
    workdir = Path(tempfile.mkdtemp(prefix="pbx-bench-outbound-"))
    try:
        users = bench_users(args.users)
        (far,) = bench_users(1, first=int(calls.CALLEE))
        (trunk,) = bench_users(1, first=int(TRUNK_USER))
        carrier = calls.Kamailio(workdir, [*users, far, trunk], args.kamailio_children)
        callee = FarPhone(workdir / "far", carrier, far[1])
        results = []
        carrier.start()
        try:
            if args.only in (None, "kamailio"):
                print("kamailio (the callers call the far phone at the phone company):",
                      flush=True)
                inf = users_csv(workdir / "direct.csv", users, extra=[[calls.CALLEE]] * len(users))
                result = calls.Result("kamailio", detail=carrier.detail,
                                      command=" ".join(carrier.command))
                try:
                    calls.search(carrier, callee, inf, workdir, args, result)
                except RuntimeError as error:
                    result.error = str(error)
                results.append(result)
                if not carrier.alive():
                    carrier.start()
            if args.only in (None, "sipd"):
                print("sipd (extensions -> sipd -> trunk -> kamailio):", flush=True)
                inf = users_csv(workdir / "outbound.csv", users,
                                extra=[[PREFIX + calls.CALLEE]] * len(users))
                sipd = OutboundSipd(workdir, users, args.rtp_ports, carrier, trunk[1])
                results.append(bench_outbound(sipd, callee, inf, workdir, args))
        finally:
            callee.stop()
            carrier.stop()
        print()
        print(calls.table(results, args).replace("sipd / kamailio sustained call rate",
                                                  "sipd+trunk / kamailio sustained call rate"))
        for r in results:
            if r.error:
                print(f"{r.name}: {r.error}")
        if args.json:
            args.json.write_text(json.dumps(
                {"machine": info, "date": date, "args": {k: str(v) for k, v in vars(args).items()},
                 "results": [asdict(r) for r in results]}, indent=2))
        return 1 if any(r.sustained is None for r in results) else 0
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

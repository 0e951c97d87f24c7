"""`python -m sipd`: the SIP daemon in the foreground (what pbxctl sipd runs)."""

import gevent
from gevent import monkey

# Greenlets do not record who spawned them (a stack walk and a dict per spawn;
# sipd spawns one per datagram and several per call, and reads none of it).
gevent.config.track_greenlet_tree = False
monkey.patch_all()

import argparse  # noqa: E402
import sys  # noqa: E402

from core import logs  # noqa: E402
from core.config import ConfigError, load_settings  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sipd")
    # Set by the main sipd when it starts a registration worker (sipd/workers.py).
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--parent", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"sipd: {error}", file=sys.stderr)
        return 2
    logs.setup(settings.log_level, settings.log_file,
               f"sipd/{args.worker}" if args.worker else "sipd")
    from sipd.daemon import run, run_worker

    try:
        if args.worker:
            return run_worker(settings, args.worker, args.port, args.parent)
        return run(settings)
    except ConfigError as error:
        print(f"sipd: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

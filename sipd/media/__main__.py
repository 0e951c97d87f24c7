"""`python -m sipd.media`: the RTP relay process. sipd starts it (sipd.media.Relay);
it is not meant to be run by hand: it serves the control socket it inherits
and exits when that socket closes."""

import argparse
import sys

from core import logs
from core.config import ConfigError, parse_port_range
from sipd.media.server import COALESCE, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sipd.media")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True, help="sipd's process id")
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--ports", default="10000-20000")
    parser.add_argument("--pidfile")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-file")
    parser.add_argument("--no-realtime", action="store_true",
                        help="do not ask for SCHED_RR (nice -10 is still tried)")
    parser.add_argument("--coalesce-ms", type=float, default=COALESCE * 1000,
                        help="pause after each batch of packets (see server.COALESCE)")
    args = parser.parse_args(argv)
    try:
        low, high = parse_port_range(args.ports, "PBX_RTP_PORTS")
    except ConfigError as error:
        print(f"sipd.media: {error}", file=sys.stderr)
        return 2
    logs.setup(args.log_level, args.log_file, "sipd-media")
    return serve(args.control_fd, args.bind, low, high, args.parent, args.pidfile,
                 realtime=not args.no_realtime, coalesce=max(0.0, args.coalesce_ms) / 1000)


if __name__ == "__main__":
    sys.exit(main())

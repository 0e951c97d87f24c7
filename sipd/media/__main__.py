"""`python -m sipd.media`: the RTP relay process. sipd starts it (sipd.media.Relay);
it is not meant to be run by hand: it serves the control socket it inherits
and exits when that socket closes."""

import argparse
import sys

from core import logs
from core.config import ConfigError, parse_port_range
from sipd.media.own import OwnEndpoints
from sipd.media.server import COALESCE, serve


def port_list(value: str) -> list[int]:
    """--own-ports: comma-separated port numbers (1-65535)."""
    ports = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        if not item.isdigit() or not 0 < int(item) <= 65535:
            raise argparse.ArgumentTypeError(f"not a port number: {item!r}")
        ports.append(int(item))
    return ports


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
    parser.add_argument("--own-ports", type=port_list, default=[],
                        help="ports the PBX listens on (SIP, TLS, panel): never sent to on "
                             "any address of this host (see own.py)")
    parser.add_argument("--own-address", action="append", default=[],
                        help="an address that reaches this host from outside "
                             "(PBX_PUBLIC_ADDRESS): counts as this host's")
    args = parser.parse_args(argv)
    try:
        low, high = parse_port_range(args.ports, "PBX_RTP_PORTS")
    except ConfigError as error:
        print(f"sipd.media: {error}", file=sys.stderr)
        return 2
    logs.setup(args.log_level, args.log_file, "sipd-media")
    own = OwnEndpoints(args.own_ports, args.own_address)
    return serve(args.control_fd, args.bind, low, high, args.parent, args.pidfile,
                 realtime=not args.no_realtime, coalesce=max(0.0, args.coalesce_ms) / 1000,
                 own=own)


if __name__ == "__main__":
    sys.exit(main())

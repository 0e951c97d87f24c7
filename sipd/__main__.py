"""`python -m sipd`: the SIP daemon in the foreground (what pbxctl sipd runs)."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

from core import logs  # noqa: E402
from core.config import ConfigError, load_settings  # noqa: E402


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"sipd: {error}", file=sys.stderr)
        return 2
    logs.setup(settings.log_level, settings.log_file, "sipd")
    from sipd.daemon import run

    try:
        return run(settings)
    except ConfigError as error:
        print(f"sipd: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""`python -m tests.sip.menu_sipd`: a real sipd (sipd/__main__.py) whose *43
answers with a menu of the test's own instead of the echo test (the hand-over
tested apart from what sipd/apps/ivr.py says and waits for): a key of 1 goes on to
TEST_MENU_1 (`AppCall.continue_to`, sipd/b2bua/handover.py), no key hangs
up. Only this process's APPS changes; sipd has no hook for it."""

import os
import sys

import sipd.__main__ as daemon  # gevent's monkey patching first, as `python -m sipd`
from sipd.apps import APPS


def menu(call) -> None:
    key = call.digits(max_digits=1, timeout=10.0)
    if key == "1":
        call.continue_to(os.environ["TEST_MENU_1"])
    call.hangup()


APPS["echo"] = menu

if __name__ == "__main__":
    sys.exit(daemon.main())

"""The back-to-back user agent: carries out the routing step's plans (RFC 3261 §12-§17).

- calls.py: `Calls`, what the handler and the daemon use: a new call's checks,
  dispatching requests and responses to the call and leg they belong to, ending.
- executor.py: a plan (sipd/routing/plan.py) from step to step while the caller waits.
- forking.py: the branches of one Ring step; the first 2xx wins.
- bridge.py: the answered call: re-INVITE, UPDATE, INFO, glare, hold.
- transfer.py: REFER, consumed here: blind and attended transfer (RFC 3515, 3891);
  reoffer.py: our own re-INVITE to a phone (a transfer moves its audio with it).
- legs.py: the caller's leg (we are its UAS) and the callee legs (we are their UAC);
  prack.py: reliable 18x (RFC 3262) on both; early.py: offers before the 2xx
  (UPDATE on early dialogs, RFC 3311; the SDP of a PRACK, RFC 3262 §5).
- call.py: one call's state; media.py: its audio through the relay;
  stack.py: what every part sends through; scheduler.py: timers on the clock
  passed in.
The plans come from the routing step (sipd/routing/decide.py).
"""

from sipd.b2bua.calls import Calls
from sipd.b2bua.legs import from_peer
from sipd.b2bua.media import held_both_ways

__all__ = ["Calls", "from_peer", "held_both_ways"]

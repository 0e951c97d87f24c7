"""An IVR menu (issue 13 item 3): "for sales press 1, for support press 2" on a
call the PBX answered itself (an `Application("ivr", NAME)` step: the routing
step's for ivr:NAME, a menu's number, or business hours leading there).

The menu's recording plays, and a key stops it (type-ahead is kept: a caller who
knows the menu presses 1 at once). Then:
- a key that is an option: the call goes on to its destination
  (call.continue_to: a phone, a group, voicemail, another menu...);
- with direct dial, a digit followed by more within INTER_DIGIT seconds is an
  extension's (or group's) number: "please hold", then on to it; a digit alone
  is still the option it names (Asterisk's IVR waits the same way when a key
  both is an option and begins an extension);
- a key that is nothing: "that is not a valid option", the menu again, up to
  `repeats` times, then on_invalid;
- no key within `timeout` seconds: the menu again up to `repeats` times, then
  on_timeout.
An empty on_invalid / on_timeout is "goodbye" and the PBX hangs up. The prompts
are said in the menu's language (call.language); the recording is the admin's.

One line per decision in the log, as DESIGN.md's:
    Call 998901112233 -> 700: IVR main: key 1 -> 1001
"""

from __future__ import annotations

import logging
from pathlib import Path

from core import destinations, prompts
from core import ivr as menus
from core.config import Settings, load_settings
from sipd.apps.call import CallerGone

log = logging.getLogger("sipd")

INTER_DIGIT = 2.0  # seconds between the digits of a number dialled directly
MAX_NUMBER = 15  # digits of an extension's number (core/destinations.NUMBER_RE)

SETTINGS: Settings | None = None  # the daemon's, read once (tests set their own)


def _settings() -> Settings:
    global SETTINGS
    if SETTINGS is None:
        SETTINGS = load_settings()
    return SETTINGS


def run(call) -> None:
    """The application: APPS["ivr"] (sipd/apps/__init__.py); call.target is the menu's name."""
    try:
        _menu(call, call.target)
    except CallerGone:
        return


def _say(call, *names: str) -> list[Path]:
    return [prompts.path(name, call.language or "en", _settings()) for name in names]


def _goodbye(call) -> None:
    call.play(*_say(call, "goodbye"), interrupt=False)
    call.hangup()


def _load(name: str):
    """(menu, its options) or None when it is gone (deleted while the call came)."""
    try:
        menu = menus.get_ivr(name)
    except menus.AccountError:
        return None
    return menu, menus.options_of(menu)


def _menu(call, name: str) -> None:
    found = _load(name)
    if found is None:
        log.warning("Call %s -> %s: IVR %s does not exist", call.caller, call.dialled, name)
        _goodbye(call)
        return
    menu, options = found
    call.language = menu.language
    recording = menus.prompt_file(menu, _settings())
    said = [recording] if recording.is_file() else []
    if not said:
        log.error("IVR %s: its recording %s is missing", menu.name, recording)
    timeouts = invalids = 0
    # A key that cuts "that is not a valid option" short is the caller's next
    # choice (they knew the menu): it is not dropped and the menu not said again.
    again = ""
    while True:
        key = again or (call.play(*said) if said else "")
        again = ""
        if not key:
            key = call.digits(max_digits=1, timeout=menu.timeout, end="")
        if not key:
            timeouts += 1
            if timeouts <= menu.repeats:
                continue
            _leave(call, menu, "no key", menu.on_timeout)
            return
        if menu.direct_dial and key.isdigit():
            more = call.digits(max_digits=MAX_NUMBER - 1, timeout=INTER_DIGIT, end="#")
            if more:
                if _dial(call, menu, key + more):
                    return
                invalids += 1
                if invalids <= menu.repeats:
                    again = call.play(*_say(call, "option-is-invalid"), interrupt=True)
                    continue
                _leave(call, menu, f"number {key + more}, no such number", menu.on_invalid)
                return
        if key in options:
            log.info("Call %s -> %s: IVR %s: key %s -> %s", call.caller, call.dialled,
                     menu.name, key, options[key])
            call.continue_to(options[key])
            return
        invalids += 1
        log.info("Call %s -> %s: IVR %s: key %s is no option (%d of %d)", call.caller,
                 call.dialled, menu.name, key, invalids, menu.repeats + 1)
        if invalids <= menu.repeats:
            again = call.play(*_say(call, "option-is-invalid"), interrupt=True)
            continue
        _leave(call, menu, f"key {key}, no option", menu.on_invalid)
        return


def _dial(call, menu, number: str) -> bool:
    """Direct dial: on to `number` if an extension or a group has it."""
    try:
        destination = destinations.parse(number)
        if destination is None or destination.kind != "number":
            return False
        destinations.check(number)
    except destinations.DestinationError:
        log.info("Call %s -> %s: IVR %s: dialled %s, no such number", call.caller,
                 call.dialled, menu.name, number)
        return False
    log.info("Call %s -> %s: IVR %s: dialled %s -> %s", call.caller, call.dialled, menu.name,
             number, number)
    call.play(*_say(call, "pls-hold-while-try"), interrupt=False)
    call.continue_to(number)
    return True


def _leave(call, menu, why: str, destination: str) -> None:
    """After the last try: `destination`, or goodbye when there is none."""
    if destination:
        log.info("Call %s -> %s: IVR %s: %s after %d tries -> %s", call.caller, call.dialled,
                 menu.name, why, menu.repeats + 1, destination)
        call.continue_to(destination)
        return
    log.info("Call %s -> %s: IVR %s: %s after %d tries -> goodbye", call.caller, call.dialled,
             menu.name, why, menu.repeats + 1)
    _goodbye(call)

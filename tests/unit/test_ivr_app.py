"""sipd/apps/ivr.py, the menu as a script, against the scripted call of
tests/unit/voicemail_fake.py (its clock moves, nothing sleeps) on a real
database: keys, direct dial, wrong keys and silence, each ending where the menu
says, and the log lines an admin greps for."""

from __future__ import annotations

import logging

import pytest

from core import accounts, ivr
from core.config import load_settings
from core.database import connect
from core.models import db
from sipd.apps import APPS
from sipd.apps import ivr as app
from tests.unit.test_prompts_sounds import write_tone
from tests.unit.voicemail_fake import FakeCall

MENU = "file:main.wav"  # what the fake call names the menu's recording


@pytest.fixture
def office(tmp_path, monkeypatch):
    settings = load_settings({"PBX_DB": str(tmp_path / "pbx.db"), "PBX_REALM": "pbx.test",
                              "PBX_PROMPTS_DIR": str(tmp_path / "prompts"),
                              "PBX_SOUNDS_DIR": str(tmp_path / "sounds")})
    connect(settings)
    monkeypatch.setattr(app, "SETTINGS", settings)
    for number in ("1001", "1002", "1003"):
        accounts.create_extension(number, "pbx.test", name=f"Desk {number}", generate=True)
    source = tmp_path / "menu.wav"
    write_tone(source, seconds=0.2)
    prompt = (source.read_bytes(), "menu.wav")
    ivr.create_ivr("sales", prompt, {"1": "1002"}, settings=settings)
    ivr.create_ivr("main", prompt, {"1": "1001", "2": "voicemail:1002", "9": "ivr:sales"},
                   number="700", on_timeout="1003", on_invalid="voicemail:1003",
                   timeout=4, repeats=2, language="ru", settings=settings)
    yield settings, prompt
    db.close()


def dial(keys: dict | None = None, menu="main", caller="998901112233") -> FakeCall:
    call = FakeCall(caller, menu, "", keys=keys or {})
    call.dialled = "700"
    APPS["ivr"](call)
    return call


def ending(call: FakeCall) -> tuple:
    return call.transcript[-1]


def test_a_key_during_the_menu_goes_to_its_option(office, caplog):
    caplog.set_level(logging.INFO, "sipd")
    call = dial({MENU: ["1"]})
    assert call.transcript == [("play", [MENU], "1"), ("continue_to", "1001")]
    assert call.language == "ru"
    assert "Call 998901112233 -> 700: IVR main: key 1 -> 1001" in caplog.messages


def test_a_key_after_the_menu_and_menus_lead_to_menus(office):
    call = FakeCall("1002", "main", "", keys={})
    call.typeahead = ""

    # No key while it plays; then 9, typed while digits() waits (type-ahead of the fake).
    def play_then_nine(*paths, interrupt=True, _play=call.play):
        result = _play(*paths, interrupt=interrupt)
        call.typeahead = "9"
        return result
    call.play = play_then_nine
    APPS["ivr"](call)
    assert ending(call) == ("continue_to", "ivr:sales")


def test_silence_replays_the_menu_then_goes_to_on_timeout(office, caplog):
    caplog.set_level(logging.INFO, "sipd")
    call = dial()
    start = 1.79e9
    assert call.played() == [MENU] * 3  # repeats 2: said three times
    assert ending(call) == ("continue_to", "1003")
    assert call.clock == pytest.approx(start + 3 * (1.0 + 4))  # each: the menu, then 4 s
    assert ("Call 998901112233 -> 700: IVR main: no key after 3 tries -> 1003"
            in caplog.messages)


def test_wrong_keys_say_so_then_go_to_on_invalid(office):
    call = dial({MENU: ["5", "7", "8"]})
    assert call.played() == [MENU, "option-is-invalid", MENU, "option-is-invalid", MENU]
    assert ending(call) == ("continue_to", "voicemail:1003")


def test_a_wrong_key_then_a_right_one(office):
    call = dial({MENU: ["5", "2"]})
    assert ending(call) == ("continue_to", "voicemail:1002")


def test_a_key_during_not_a_valid_option_is_the_next_choice(office):
    # Caught end to end: the key pressed while the PBX said "not a valid
    # option" was dropped and the caller heard the whole menu again.
    call = dial({MENU: ["5"], "option-is-invalid": ["2"]})
    assert call.played() == [MENU, "option-is-invalid"]
    assert ending(call) == ("continue_to", "voicemail:1002")


def test_without_on_timeout_it_says_goodbye_and_hangs_up(office):
    ivr.update_ivr("main", on_timeout="", repeats=0)
    call = dial()
    assert call.played() == [MENU, "goodbye"]
    assert ending(call) == ("hangup",)


def test_direct_dial_an_extension_or_the_option(office, caplog):
    caplog.set_level(logging.INFO, "sipd")
    ivr.update_ivr("main", direct_dial=True)
    call = dial({MENU: ["1002"]})
    assert call.played() == [MENU, "pls-hold-while-try"]
    assert ending(call) == ("continue_to", "1002")
    assert "Call 998901112233 -> 700: IVR main: dialled 1002 -> 1002" in caplog.messages
    # 1 alone (nothing within the inter-digit time) is still option 1.
    assert ending(dial({MENU: ["1"]})) == ("continue_to", "1001")
    # A number nobody has is a wrong key.
    wrong = dial({MENU: ["4444", "1"]})
    assert wrong.played() == [MENU, "option-is-invalid", MENU]
    assert ending(wrong) == ("continue_to", "1001")


def test_without_direct_dial_the_digits_after_a_key_do_not_dial(office):
    call = dial({MENU: ["1002"]})
    assert ending(call) == ("continue_to", "1001")


def test_a_menu_deleted_before_the_call_says_goodbye(office):
    call = dial(menu="gone")
    assert call.played() == ["goodbye"] and ending(call) == ("hangup",)


def test_the_caller_hanging_up_ends_the_script(office):
    call = FakeCall("1002", "main", "", gone_after=1)
    APPS["ivr"](call)  # CallerGone is the end, not an error
    assert call.transcript == [("play", [MENU], "")]

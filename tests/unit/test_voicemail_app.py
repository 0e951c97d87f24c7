"""The voicemail application (sipd/apps/voicemail.py) against a scripted AppCall
(tests/unit/voicemail_fake.py) and a real database: what the caller hears, what is
kept, PINs and the ban count, the menu. The clock is the fake's; nothing sleeps."""

from __future__ import annotations

import wave

import pytest

from core import accounts, voicemail
from core.config import load_settings
from core.database import connect
from core.models import VoicemailMessage, db
from sipd.apps import APPS
from sipd.apps import voicemail as app
from tests.unit.voicemail_fake import FakeCall

PIN = "2468"


@pytest.fixture
def office(tmp_path):
    settings = load_settings({"PBX_DB": str(tmp_path / "pbx.db"), "PBX_REALM": "pbx.test",
                              "PBX_VOICEMAIL_DIR": str(tmp_path / "vm"),
                              "PBX_PROMPTS_DIR": str(tmp_path / "prompts"),
                              "PBX_SOUNDS_DIR": str(tmp_path / "sounds"),
                              "PBX_VOICEMAIL_MAX_SECONDS": "60"})
    connect(settings)
    for number in ("1001", "1002"):
        accounts.create_extension(number, "pbx.test", name=f"Desk {number}", generate=True)
        voicemail.set_voicemail(number, True, pin=PIN)
    events = {"failed": [], "changed": [], "new": []}
    app.install(app.Context(
        settings=settings,
        auth_failed=lambda number, host, reason: events["failed"].append((number, host, reason)),
        changed=events["changed"].append,
        new_message=lambda m: events["new"].append(m.id)))
    yield settings, events
    app.install(app.Context())
    db.close()


def leave(caller="1002", target="1001", reason="no_answer", **script) -> FakeCall:
    call = FakeCall(caller, target, reason, caller_name=f"Desk {caller}", **script)
    APPS["voicemail"](call)
    return call


def test_registered_under_its_name():
    assert "voicemail" in APPS and callable(APPS["voicemail"])


@pytest.mark.parametrize(("reason", "state"), [
    ("no_answer", "vm-isunavail"), ("unavailable", "vm-isunavail"), ("", "vm-isunavail"),
    ("busy", "vm-isonphone"), ("dnd", "vm-isonphone"),
])
def test_leave_a_message_greeting_by_reason(office, reason, state):
    settings, events = office
    call = leave(reason=reason, recordings=[(6.5, "hangup")])
    assert call.played() == ["vm-theperson", "digits/1", "digits/0", "digits/0", "digits/1",
                             state, "vm-intro", "beep"]
    (message,) = VoicemailMessage.select()
    assert (message.caller, message.caller_name, message.seconds, message.folder) == (
        "1002", "Desk 1002", 6.5, "new")
    with wave.open(str(voicemail.message_file(message, settings))) as kept:
        assert kept.getnframes() == int(8000 * 6.5)
    assert message.received == pytest.approx(call.now() - 6.5)
    assert events["changed"] == ["1001"] and events["new"] == [message.id]


def test_hash_ends_the_recording_and_says_saved(office):
    call = leave(recordings=[(3.0, "key", "#")])
    assert call.played()[-3:] == ["beep", "vm-saved", "vm-goodbye"]
    assert call.transcript[-1] == ("hangup",)
    assert VoicemailMessage.select().count() == 1


def test_a_key_skips_the_greeting_to_the_beep(office):
    call = leave(keys={"vm-theperson": ["#"]}, recordings=[(2.0, "hangup")])
    assert call.played() == ["vm-theperson", "beep"]


def test_too_short_and_silence_only_recordings_are_dropped(office, tmp_path):
    leave(recordings=[(0.7, "hangup")])
    # Ended by silence: the endpoint's length leaves the silence out (0.8 s spoken).
    call = leave(recordings=[(0.8, "silence")])
    assert VoicemailMessage.select().count() == 0
    assert not any((tmp_path / "vm" / "1001").glob("*.wav"))
    assert call.played()[-1] == "vm-goodbye"
    leave(recordings=[(7.0, "silence")])
    assert [m.seconds for m in VoicemailMessage.select()] == [7.0]


def test_the_longest_message_is_the_setting(office):
    call = leave(recordings=[(500.0, "max")])
    assert call.transcript[[e[0] for e in call.transcript].index("record")][2] == 60
    assert [m.seconds for m in VoicemailMessage.select()] == [60.0]


def test_a_mailbox_that_is_off_takes_no_message(office):
    voicemail.set_voicemail("1001", False)
    call = leave(recordings=[(5.0, "hangup")])
    assert call.played() == ["vm-goodbye"] and call.hung_up
    assert VoicemailMessage.select().count() == 0


def test_own_greeting_and_language(office, tmp_path):
    greeting = tmp_path / "hello.wav"
    greeting.write_bytes(b"RIFF")
    voicemail.Mailbox.update(greeting=str(greeting), language="uz").execute()
    call = leave(recordings=[(2.0, "hangup")])
    assert call.played() == ["file:hello.wav", "beep"]
    assert call.language == "uz"


def test_caller_gone_during_the_greeting_ends_quietly(office):
    call = leave(gone_after=1, recordings=[(2.0, "hangup")])
    assert call.gone and VoicemailMessage.select().count() == 0


# -- listening ------------------------------------------------------------------------


def messages(office, count=2):
    for seconds in range(3, 3 + count):
        leave(recordings=[(float(seconds), "hangup")])
    return [m.id for m in voicemail.for_listening("1001")]


def test_star97_plays_new_messages_then_saves_and_deletes(office):
    settings, events = office
    first, second = messages(office)
    events["changed"].clear()
    call = FakeCall("1001", "1001", "check", keys={
        "vm-password": [PIN + "#"], "vm-instructions": ["9", "7"]})
    app.run(call)
    files = [n for n in call.played() if n.startswith("file:")]
    assert call.played()[:5] == ["vm-password", "vm-youhave", "digits/2", "vm-INBOX",
                                 "vm-messages"]
    assert len(files) == 2
    assert "vm-saved" in call.played() and "vm-deleted" in call.played()
    # After the messages, the menu once more; no answer: the end.
    assert call.played()[-3:] == ["vm-nomore", "vm-menu", "vm-goodbye"] and call.hung_up
    (kept,) = VoicemailMessage.select()
    assert (kept.id, kept.folder) == (first, "old") and kept.heard_at is not None
    assert not any(m.id == second for m in VoicemailMessage.select())
    assert voicemail.counts("1001") == (0, 1)
    assert events["changed"] == ["1001"] * 3  # heard, heard, deleted


def test_star97_one_repeats_and_hash_goes_on(office):
    messages(office, count=1)
    call = FakeCall("1001", "1001", "check", keys={
        "vm-password": [PIN + "#"], "vm-instructions": ["1", "#"]})
    app.run(call)
    assert sum(1 for n in call.played() if n.startswith("file:")) == 2
    assert call.played()[2:5] == ["digits/1", "vm-INBOX", "vm-message"]
    assert voicemail.counts("1001") == (0, 1)


def test_star98_any_mailbox_with_number_and_pin(office):
    messages(office, count=1)
    call = FakeCall("1002", "", "login", keys={"vm-login": ["1001#"], "vm-password": [PIN]})
    # The PIN typed without # : digits() ends it at the timeout.
    app.run(call)
    assert "file:" in " ".join(call.played())
    assert voicemail.counts("1001") == (0, 1)


def test_three_wrong_pins_hang_up_and_count_towards_the_ban(office):
    settings, events = office
    messages(office, count=1)
    call = FakeCall("1002", "", "login", source="127.0.0.9", keys={
        "vm-login": ["1001#", "1001#", "1999#"], "vm-password": ["1111#", "0000#", PIN + "#"]})
    app.run(call)
    assert call.played().count("vm-incorrect") == 3
    assert call.played()[-1] == "vm-goodbye" and call.hung_up
    assert not any(n.startswith("file:") for n in call.played())
    assert events["failed"] == [("1001", "127.0.0.9", "wrong voicemail PIN"),
                                ("1001", "127.0.0.9", "wrong voicemail PIN"),
                                ("1999", "127.0.0.9", "wrong voicemail PIN")]
    assert voicemail.counts("1001") == (1, 0)


def test_a_mailbox_that_is_off_cannot_be_opened(office):
    voicemail.set_voicemail("1001", False)
    call = FakeCall("1001", "1001", "check", keys={"vm-password": [PIN + "#"] * 3})
    app.run(call)
    assert call.played().count("vm-incorrect") == 3


def test_no_messages(office):
    call = FakeCall("1001", "1001", "check", keys={"vm-password": [PIN + "#"]})
    app.run(call)
    assert call.played()[1:] == ["vm-youhave", "digits/0", "vm-INBOX", "vm-messages",
                                 "vm-menu", "vm-nomore", "vm-menu", "vm-goodbye"]


def test_guard_reporter_feeds_the_security_guard():
    seen = []

    class Guard:
        def auth_failed(self, number, source, reason):
            seen.append((number, source.host, reason))

    app.guard_reporter(Guard())("1001", "127.0.0.5", "wrong voicemail PIN")
    assert seen == [("1001", "127.0.0.5", "wrong voicemail PIN")]


# -- the greeting, recorded by phone ---------------------------------------------------


def greeting_call(keys, recordings):
    call = FakeCall("1001", "1001", "check",
                    keys={"vm-password": [PIN + "#"], "vm-menu": ["0", "#"], **keys},
                    recordings=recordings)
    app.run(call)
    return call


def test_a_greeting_recorded_heard_back_and_kept_is_what_callers_hear(office):
    settings, _ = office
    call = greeting_call({"vm-greeting-menu": ["1", "*"], "vm-review": ["1"]},
                         [(3.0, "key", "#")])
    recorded = [e for e in call.transcript if e[0] == "record"]
    assert len(recorded) == 1 and recorded[0][1].startswith("greeting-")
    played = call.played()
    at = played.index("vm-rec-greeting")
    assert played[at:at + 4] == ["vm-rec-greeting", "beep", f"file:{recorded[0][1]}",
                                 "vm-review"]
    assert "vm-greeting-saved" in played and call.hung_up
    mailbox = voicemail.mailbox_of("1001")
    assert mailbox.greeting == "1001/greeting.wav"
    kept = voicemail.greeting_file(mailbox, settings)
    assert kept.is_file() and sorted(p.name for p in kept.parent.iterdir()) == ["greeting.wav"]
    caller = leave(recordings=[(2.0, "hangup")])
    assert caller.played() == ["file:greeting.wav", "beep"]


def test_re_recorded_then_kept_two_recordings_one_greeting(office):
    settings, _ = office
    call = greeting_call({"vm-greeting-menu": ["1", "*"], "vm-review": ["2", "3", "1"]},
                         [(3.0, "key", "#"), (4.0, "silence")])
    files = [n for n in call.played() if n.startswith("file:")]
    first, second = [e[1] for e in call.transcript if e[0] == "record"]
    # Heard back, again on 2, then recorded again (3), heard back and kept (1).
    assert files == [f"file:{first}", f"file:{first}", f"file:{second}"]
    directory = voicemail.storage(settings) / "1001"
    assert sorted(p.name for p in directory.iterdir()) == ["greeting.wav"]
    assert (directory / "greeting.wav").stat().st_size == 44 + 2 * 8000 * 4


def test_a_greeting_shorter_than_a_second_is_not_kept(office):
    settings, _ = office
    call = greeting_call({"vm-greeting-menu": ["1", "*"]}, [(0.6, "key", "#")])
    assert "vm-tooshort" in call.played() and "vm-review" not in call.played()
    assert voicemail.mailbox_of("1001").greeting == ""
    assert not any((voicemail.storage(settings) / "1001").glob("greeting*"))


def test_a_greeting_not_accepted_or_hung_up_on_is_not_kept(office):
    settings, _ = office
    greeting_call({"vm-greeting-menu": ["1", "*"]}, [(3.0, "key", "#")])  # review unanswered
    call = FakeCall("1001", "1001", "check", keys={
        "vm-password": [PIN + "#"], "vm-menu": ["0"], "vm-greeting-menu": ["1"]},
        recordings=[(3.0, "hangup")])
    app.run(call)
    assert voicemail.mailbox_of("1001").greeting == ""
    assert not any((voicemail.storage(settings) / "1001").glob("greeting*"))


def test_deleting_ones_greeting_brings_back_the_standard_one(office):
    settings, _ = office
    greeting_call({"vm-greeting-menu": ["1", "*"], "vm-review": ["1"]}, [(3.0, "key", "#")])
    call = greeting_call({"vm-greeting-menu": ["2", "3", "2", "*"]}, [])
    played = call.played()
    at = played.index("file:greeting.wav")
    assert "vm-greeting-deleted" in played[at:]
    # Heard after the deletion: the standard greeting naming the number.
    after = played[played.index("vm-greeting-deleted"):]
    assert after[1:8] == ["vm-greeting-menu", "vm-theperson", "digits/1", "digits/0",
                          "digits/0", "digits/1", "vm-isunavail"]
    assert voicemail.mailbox_of("1001").greeting == ""
    assert not (voicemail.storage(settings) / "1001" / "greeting.wav").exists()
    caller = leave(recordings=[(2.0, "hangup")])
    assert caller.played()[0] == "vm-theperson"

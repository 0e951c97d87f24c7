"""sipd/mwi.py's Notifier on a real database with a moved clock and a captured send: who
is told what and when (unsolicited to registered phones, in-dialog to subscribers,
only on a change or a new registration, terminated at expiry, forgotten on 481).
SUBSCRIBE itself, with its digest, is tests/sip/test_mwi.py's (sipp, baresip)."""

from __future__ import annotations

import pytest

from core import accounts, voicemail
from core.models import Binding
from sipd.mwi import SYNC_EVERY, Notifier, Subscription
from sipd.registrar import Destination
from sipd.sip.message import parse
from sipd.sip.mwi import parse as parse_body
from sipd.sip.responses import make_response

NOW = 1_790_000_000.0


class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now


@pytest.fixture
def office(database, tmp_path):
    for number in ("1001", "1002", "1003"):
        accounts.create_extension(number, "pbx.test", generate=True)
        extension = accounts.get_extension(number)
        Binding.create(extension=extension, aor=f"sip:{number}@pbx.test",
                       contact=f"sip:{number}@127.0.0.1:{6000 + int(number[-1])}",
                       source_host="127.0.0.1", source_port=6000 + int(number[-1]),
                       transport="UDP", expires_at=NOW + 3600, call_id=f"r{number}", cseq=1)
    voicemail.set_voicemail("1003", False)  # no mailbox on: no lamp
    sent: list[tuple] = []
    clock = Clock()
    notifier = Notifier(None, lambda data, d: sent.append((parse(data), d)) or True,
                        "127.0.0.1", 5060, "pbx.test", clock=clock)
    settings = type("S", (), {"voicemail_dir": str(tmp_path / "vm")})()
    return notifier, sent, clock, settings


def told(sent, notifier=None) -> list[tuple[str, str, str]]:
    """(Request-URI, Messages-Waiting counts, Subscription-State) of each NOTIFY sent,
    each answered 200 (so that Timer E does not send it again)."""
    out = []
    for request, _ in sent:
        if notifier is not None:
            notifier.response(parse(bytes(make_response(request, 200))), None)
        _, summary = parse_body(request.body.decode())
        out.append((request.uri, f"{summary.new}/{summary.old}",
                    request.headers.get("Subscription-State")))
    sent.clear()
    return out


def leave(settings, number="1001"):
    path = voicemail.new_recording_path(number, settings, NOW)
    path.write_bytes(b"RIFF")
    return voicemail.add_message(number, path, 3.0, settings, "1002")


def test_registered_phones_are_told_at_start_then_only_on_change(office):
    notifier, sent, clock, settings = office
    notifier.tick()
    assert sorted(told(sent, notifier)) == [("sip:1001@127.0.0.1:6001", "0/0", "active"),
                                  ("sip:1002@127.0.0.1:6002", "0/0", "active")]
    clock.now += SYNC_EVERY + 0.1
    notifier.tick()
    assert told(sent, notifier) == []  # nothing changed
    message = leave(settings)
    clock.now += 0.5
    notifier.tick()
    assert told(sent, notifier) == []  # read every SYNC_EVERY s...
    notifier.changed("1001")  # ...or at once when this sipd made the change
    assert told(sent, notifier) == [("sip:1001@127.0.0.1:6001", "1/0", "active")]
    voicemail.mark_heard(message.id)
    clock.now += SYNC_EVERY + 0.1
    notifier.tick()  # a change by another process (the panel, pbxctl)
    assert told(sent, notifier) == [("sip:1001@127.0.0.1:6001", "0/1", "active")]


def test_a_new_registration_is_told(office):
    notifier, sent, clock, _ = office
    notifier.tick()
    told(sent, notifier)
    Binding.create(extension=accounts.get_extension("1001"), aor="sip:1001@pbx.test",
                   contact="sip:1001@127.0.0.1:6100", source_host="127.0.0.1",
                   source_port=6100, transport="UDP", expires_at=NOW + 3600, call_id="r2",
                   cseq=1)
    clock.now += SYNC_EVERY + 0.1
    notifier.tick()
    assert told(sent, notifier) == [("sip:1001@127.0.0.1:6100", "0/0", "active")]


def test_a_subscriber_is_told_in_its_dialog_not_unsolicited(office):
    notifier, sent, clock, settings = office
    subscription = Subscription("1001", "sub-1", "<sip:1001@pbx.test>;tag=phone",
                                "ourtag", "sip:1001@127.0.0.1:6001",
                                Destination("127.0.0.1", 6001, "UDP"), NOW + 600)
    notifier.subscriptions[("sub-1", "phone")] = subscription
    notifier.tick()
    # 1001 subscribes: told in its dialog; 1002 never did: unsolicited.
    assert sorted(told(sent, notifier)) == [
        ("sip:1001@127.0.0.1:6001", "0/0", "active;expires=600"),
        ("sip:1002@127.0.0.1:6002", "0/0", "active")]
    leave(settings)
    notifier.changed("1001")
    (request, _), = sent
    assert (request.headers.get("Call-ID"), request.headers.get("To")) == (
        "sub-1", "<sip:1001@pbx.test>;tag=phone")
    assert request.headers.get("From") == "<sip:1001@pbx.test>;tag=ourtag"
    assert request.headers.get("CSeq") == "2 NOTIFY"
    assert told(sent, notifier) == [("sip:1001@127.0.0.1:6001", "1/0", "active;expires=600")]
    # RFC 6665 §4.2.2: at expiry a last NOTIFY, terminated, and the subscription is gone.
    clock.now += 601
    notifier.tick()
    assert told(sent, notifier) == [("sip:1001@127.0.0.1:6001", "1/0", "terminated;reason=timeout")]
    assert notifier.subscriptions == {}


def test_481_forgets_the_subscription(office):
    notifier, sent, clock, settings = office
    notifier.subscriptions[("sub-1", "phone")] = Subscription(
        "1001", "sub-1", "<sip:1001@pbx.test>;tag=phone", "ourtag", "sip:1001@127.0.0.1:6001",
        Destination("127.0.0.1", 6001, "UDP"), NOW + 600)
    notifier.tick()
    told(sent, notifier)
    leave(settings)
    notifier.changed("1001")
    (request, _), = sent
    answer = make_response(request, 481)
    assert notifier.response(parse(bytes(answer)), None) is True
    assert notifier.subscriptions == {}

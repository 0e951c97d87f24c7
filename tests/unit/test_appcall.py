"""AppCall (sipd/apps/call.py) against a scripted relay whose events() moves
the call's clock instead of waiting; SIP INFO keys; the endpoint's SDP answer."""

import pytest

from sipd.apps.call import AppCall, CallerGone, Recording
from sipd.b2bua.application import dtmf_key
from sipd.b2bua.media import Media
from sipd.sip.sdp import SessionDescription


class Owner:
    def __init__(self):
        self.time = 100.0
        self.hung_up = []

    def clock(self):
        return self.time

    def hangup_app(self, app):
        self.hung_up.append(app)


class ScriptedRelay:
    """events(): the next scripted batch after `after` seconds (the clock moves
    by what was waited); nothing scripted: the whole timeout passes."""

    def __init__(self, owner, script):
        self.owner = owner
        self.script = list(script)  # (after seconds, [events])
        self.ops = []

    def endpoint(self, session, op, **fields):
        self.ops.append((op, fields))
        if op == "record_stop":
            return {"recorded": {"path": "/r.wav", "seconds": 1.5, "ended_by": "hangup"}}
        return {}

    def events(self, session, timeout):
        if self.script and self.script[0][0] <= timeout:
            after, batch = self.script.pop(0)
            self.owner.time += after
            return batch
        if self.script:
            self.script[0] = (self.script[0][0] - timeout, self.script[0][1])
        self.owner.time += timeout
        return []


def make(script):
    owner = Owner()
    relay = ScriptedRelay(owner, script)
    call = AppCall(owner, relay, object(), caller="1001", caller_name="A", dialled="*97",
                   target="1001", reason="", source="127.0.0.1")
    return call, relay, owner


def key(k):
    return {"event": "key", "key": k}


def test_play_returns_the_key_that_interrupts_it_and_stops_playback():
    call, relay, _ = make([(0.3, [key("5")])])
    assert call.play("/a.wav", "/b.wav") == "5"
    assert [op for op, _ in relay.ops] == ["play", "stop"]
    assert relay.ops[0][1]["files"] == ["/a.wav", "/b.wav"]


def test_play_to_the_end_and_type_ahead_for_digits():
    call, relay, owner = make([(0.1, [key("1")]), (0.5, [{"event": "played", "tag": 1}])])
    assert call.play("/a.wav", interrupt=False) == ""
    call.keys.extend("23#")
    assert call.digits(max_digits=6) == "123"  # ended by #, not counted


def test_digits_timeouts_first_and_between():
    call, _, owner = make([])
    start = owner.time
    assert call.digits(timeout=5.0, first_timeout=2.0) == ""
    assert owner.time - start == pytest.approx(2.0)
    call, _, owner = make([(1.0, [key("4")]), (1.0, [key("2")])])
    start = owner.time
    assert call.digits(max_digits=4, timeout=3.0) == "42"
    assert owner.time - start == pytest.approx(5.0)  # 3 s after the last key


def test_record_done_by_a_key_and_by_hangup():
    done = {"event": "recorded", "path": "/m.wav", "seconds": 4.2, "ended_by": "key",
            "key": "#"}
    call, relay, _ = make([(4.2, [done])])
    call.keys.append("9")  # pressed before the beep: does not end it
    assert call.record("/m.wav", 60) == Recording("/m.wav", 4.2, "key", "#")
    assert relay.ops[0] == ("record", {"path": "/m.wav", "max": 60, "silence": 5.0,
                                       "end_keys": "#"})
    call, relay, _ = make([])
    call.caller_gone()
    with pytest.raises(CallerGone):
        call.record("/r.wav", 60)  # gone before it began
    call, relay, _ = make([(0.5, [{"event": "closed"}])])
    recording = call.record("/r.wav", 60)  # the caller hung up during it
    assert recording.ended_by == "hangup" and relay.ops[-1][0] == "record_stop"
    with pytest.raises(CallerGone):
        call.play("/x.wav")


def test_hangup_once_then_caller_gone():
    call, _, owner = make([])
    call.hangup()
    call.hangup()
    assert owner.hung_up == [call]
    with pytest.raises(CallerGone):
        call.tone(1000, 200)


@pytest.mark.parametrize("body, content_type, expected", [
    ("Signal=5\r\nDuration=160\r\n", "application/dtmf-relay", "5"),
    ("Signal= #\r\n", "application/dtmf-relay", "#"),
    ("Signal=11\r\n", "application/dtmf-relay", "#"),
    ("Signal=10\r\n", "application/dtmf-relay", "*"),
    ("Duration=160\r\n", "application/dtmf-relay", ""),
    ("Signal=55\r\n", "application/dtmf-relay", ""),
    ("7", "application/dtmf", "7"),
])
def test_sip_info_keys(body, content_type, expected):
    assert dtmf_key(body, content_type) == expected


class _Call:
    record_id = 7

    class media:  # noqa: N801 - stands in for a MediaSession
        @staticmethod
        def leg(name):
            class Ports:
                local_rtp_port = 40000
            return Ports


class _Relay:
    address = "192.0.2.1"


def _offer(formats, extra=""):
    return SessionDescription.parse((
        "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
        f"m=audio 4000 RTP/AVP {formats}\r\n{extra}m=video 5000 RTP/AVP 96\r\n").encode())


def test_the_endpoints_answer_picks_one_law_and_telephone_event():
    offer = _offer("18 8 0 101", "a=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n")
    body, payload_type, event_type = Media(_Relay()).endpoint_answer(_Call, offer)
    text = body.decode()
    assert (payload_type, event_type) == (8, 101)
    assert "m=audio 40000 RTP/AVP 8 101\r\n" in text and "a=recvonly" in text
    assert "m=video 0 RTP/AVP 96" in text and "c=IN IP4 192.0.2.1" in text
    assert Media(_Relay()).endpoint_answer(_Call, offer, prefer=0)[1] == 0
    assert Media(_Relay()).endpoint_answer(_Call, _offer("18 9")) is None

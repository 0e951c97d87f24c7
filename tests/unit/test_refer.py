"""sipd/sip/refer.py against the RFCs' examples and the REFERs real phones sent.

- RFC 3515 §4.1 (the prototypical REFER call flow) and §4.2 (a second REFER in
  the dialog): the REFER parsed, and the NOTIFYs F3 and F5 (and F9) built from the
  dialog the recipient holds, compared with the RFC's messages line by line.
- RFC 3515 §2.1's Refer-To examples (Erratum 4898 applied to the second one),
  RFC 3891 §6.1's Replaces examples, RFC 3892's Referred-By.
- tests/data: baresip 1.0.0's blind transfer (ctrl_tcp "transfer") and linphonec
  5.1.65's attended transfer ("transfer ID --to-call ID"), captured by
  tests/sip/capture_refer.py against a stand-in PBX on loopback.
"""

from pathlib import Path

import pytest

from sipd.sip.dialog import Dialog
from sipd.sip.message import ParseError, Request, parse
from sipd.sip.refer import (
    SIPFRAG,
    Refer,
    ReferredBy,
    ReferTo,
    Replaces,
    format_uri_headers,
    notify,
    parse_sipfrag,
    parse_uri_headers,
    sipfrag,
)
from tests.unit.test_message import crlf

DATA = Path(__file__).resolve().parent.parent / "data"

# RFC 3515 §4.1, Message One, with "(whatever URI)" given as the first of §2.1's examples.
F1 = crlf(
    "REFER sip:b@atlanta.example.com SIP/2.0\n"
    "Via: SIP/2.0/UDP agenta.atlanta.example.com;branch=z9hG4bK2293940223\n"
    "To: <sip:b@atlanta.example.com>\n"
    "From: <sip:a@atlanta.example.com>;tag=193402342\n"
    "Call-ID: 898234234@agenta.atlanta.example.com\n"
    "CSeq: 93809823 REFER\n"
    "Max-Forwards: 70\n"
    "Refer-To: sip:alice@atlanta.example.com\n"
    "Contact: sip:a@atlanta.example.com\n"
    "Content-Length: 0\n"
    "\n"
)
# Message Three and Message Five as the RFC prints them (the expires of F3 is
# "(depends on Refer-To URI)" there).
F3 = crlf(
    "NOTIFY sip:a@atlanta.example.com SIP/2.0\n"
    "Via: SIP/2.0/UDP agentb.atlanta.example.com;branch=z9hG4bK9922ef992-25\n"
    "To: <sip:a@atlanta.example.com>;tag=193402342\n"
    "From: <sip:b@atlanta.example.com>;tag=4992881234\n"
    "Call-ID: 898234234@agenta.atlanta.example.com\n"
    "CSeq: 1993402 NOTIFY\n"
    "Max-Forwards: 70\n"
    "Event: refer\n"
    "Subscription-State: active;expires=60\n"
    "Contact: sip:b@atlanta.example.com\n"
    "Content-Type: message/sipfrag;version=2.0\n"
    "Content-Length: 20\n"
    "\n"
    "SIP/2.0 100 Trying\n"
)
F5 = crlf(
    "NOTIFY sip:a@atlanta.example.com SIP/2.0\n"
    "Via: SIP/2.0/UDP agentb.atlanta.example.com;branch=z9hG4bK9323394234\n"
    "To: <sip:a@atlanta.example.com>;tag=193402342\n"
    "From: <sip:b@atlanta.example.com>;tag=4992881234\n"
    "Call-ID: 898234234@agenta.atlanta.example.com\n"
    "CSeq: 1993403 NOTIFY\n"
    "Max-Forwards: 70\n"
    "Event: refer\n"
    "Subscription-State: terminated;reason=noresource\n"
    "Contact: sip:b@atlanta.example.com\n"
    "Content-Type: message/sipfrag;version=2.0\n"
    "Content-Length: 16\n"
    "\n"
    "SIP/2.0 200 OK\n"
)


def agent_b_dialog() -> Dialog:
    """The dialog Agent B holds after F2 (202 Accepted, its tag 4992881234), its
    next CSeq 1993402."""
    return Dialog(
        call_id="898234234@agenta.atlanta.example.com",
        local_tag="4992881234",
        remote_tag="193402342",
        local_uri="sip:b@atlanta.example.com",
        remote_uri="sip:a@atlanta.example.com",
        remote_target="sip:a@atlanta.example.com",
        local_seq=1993401,
    )


def lines_of(message: bytes) -> list[str]:
    head, _, body = message.partition(b"\r\n\r\n")
    return [line for line in head.decode().split("\r\n") if not line.startswith("Via:")] + [
        body.decode()
    ]


def test_rfc3515_prototypical_refer_is_read():
    request = parse(F1)
    assert isinstance(request, Request) and request.method == "REFER"
    refer = Refer.from_request(request)
    assert str(refer.refer_to.uri) == "sip:alice@atlanta.example.com"
    assert refer.refer_to.user == "alice" and refer.refer_to.method == "INVITE"
    assert refer.refer_to.replaces is None and refer.referred_by is None
    assert refer.cseq == 93809823 and refer.subscription


def test_rfc3515_notifies_f3_and_f5_are_built_as_printed():
    dialog = agent_b_dialog()
    f3 = notify(dialog, "SIP/2.0/UDP agentb.atlanta.example.com;branch=z9hG4bK9922ef992-25",
                "sip:b@atlanta.example.com", 100, expires=60)
    f5 = notify(dialog, "SIP/2.0/UDP agentb.atlanta.example.com;branch=z9hG4bK9323394234",
                "sip:b@atlanta.example.com", 200)
    # The headers come in dialog.request's order; the values, the bodies and their
    # lengths are the RFC's.
    for built, printed in ((f3, F3), (f5, F5)):
        assert sorted(lines_of(bytes(built))) == sorted(lines_of(printed)), bytes(built).decode()
        assert bytes(built).split(b"\r\n", 1)[0] == b"NOTIFY sip:a@atlanta.example.com SIP/2.0"
    assert parse_sipfrag(f3.body) == (100, "Trying")
    assert parse_sipfrag(f5.body) == (200, "OK")


def test_rfc3515_second_refer_in_the_dialog_gets_its_id():
    """§4.2: F7 is a second REFER (CSeq 93809824); its NOTIFYs carry id=93809824 (§2.4.6)."""
    second = parse(F1.replace(b"CSeq: 93809823", b"CSeq: 93809824"))
    refer = Refer.from_request(second)
    built = notify(agent_b_dialog(), "SIP/2.0/UDP agentb.atlanta.example.com;branch=z9hG4bKx",
                   "sip:b@atlanta.example.com", 100, refer_cseq=refer.cseq)
    assert built.headers.get("Event") == "refer;id=93809824"
    assert built.headers.get("Content-Type") == SIPFRAG


def test_a_failed_transfer_is_reported_with_its_status_line():
    built = notify(agent_b_dialog(), "SIP/2.0/UDP b;branch=z9hG4bKy", "<sip:b@b>", 486)
    assert built.body == b"SIP/2.0 486 Busy Here\r\n"
    assert built.headers.get("Subscription-State") == "terminated;reason=noresource"
    assert sipfrag(180) == b"SIP/2.0 180 Ringing\r\n"
    assert sipfrag(503, "Service Unavailable") == b"SIP/2.0 503 Service Unavailable\r\n"


@pytest.mark.parametrize("body", [b"", b"hello\r\n", b"SIP/2.0 20 OK\r\n", b"INVITE sip:a SIP/2.0"])
def test_a_sipfrag_without_a_status_line_is_refused(body):
    with pytest.raises(ParseError):
        parse_sipfrag(body)


# -- RFC 3515 §2.1 --------------------------------------------------------------------------


def test_rfc3515_refer_to_examples():
    alice = ReferTo.parse("sip:alice@atlanta.example.com")
    assert alice.user == "alice" and alice.replaces is None and alice.embedded == []

    # Erratum 4898: "Call-ID=55432%40..." (the RFC has Call-ID%3D55432, an hname without "=")
    bob = ReferTo.parse(
        "<sip:bob@biloxi.example.net?Accept-Contact=sip:bobsdesk.biloxi.example.net"
        "&Call-ID=55432%40alicepc.atlanta.example.com>"
    )
    assert bob.embedded == [
        ("Accept-Contact", "sip:bobsdesk.biloxi.example.net"),
        ("Call-ID", "55432@alicepc.atlanta.example.com"),
    ]
    assert bob.target() == "sip:bob@biloxi.example.net" and bob.replaces is None

    dave = ReferTo.parse(
        "<sip:dave@denver.example.org?Replaces=12345%40192.168.118.3%3Bto-tag%3D12345"
        "%3Bfrom-tag%3D5FFE-3994>"
    )
    assert dave.replaces == Replaces("12345@192.168.118.3", to_tag="12345", from_tag="5FFE-3994")
    assert dave.target() == "sip:dave@denver.example.org" and dave.user == "dave"

    carol = ReferTo.parse("<sip:carol@cleveland.example.org;method=SUBSCRIBE>")
    assert carol.method == "SUBSCRIBE"

    web = ReferTo.parse("http://www.ietf.org")
    assert not web.is_sip and web.user is None and web.target() == "http://www.ietf.org"


def test_the_unerrated_refer_to_example_is_malformed():
    """RFC 3261 §19.1.1: header = hname "=" hvalue; an escaped "=" is part of hname."""
    with pytest.raises(ParseError):
        ReferTo.parse(
            "<sip:bob@biloxi.example.net?Accept-Contact=sip:bobsdesk.biloxi.example.net"
            "&Call-ID%3D55432%40alicepc.atlanta.example.com>"
        )


def test_replaces_is_escaped_into_a_uri_as_rfc3515_prints_it():
    replaces = Replaces("12345@192.168.118.3", to_tag="12345", from_tag="5FFE-3994")
    assert format_uri_headers([("Replaces", str(replaces))]) == (
        "Replaces=12345%40192.168.118.3%3Bto-tag%3D12345%3Bfrom-tag%3D5FFE-3994"
    )
    assert parse_uri_headers(format_uri_headers([("Replaces", str(replaces))])) == [
        ("Replaces", str(replaces))
    ]


# -- RFC 3891 §6.1 ---------------------------------------------------------------------------


def test_rfc3891_replaces_examples():
    # The first example is folded over three lines; parsed in a message it is unfolded.
    message = parse(crlf(
        "INVITE sip:bob@example.com SIP/2.0\n"
        "Replaces: 98732@sip.example.com\n"
        "          ;from-tag=r33th4x0r\n"
        "          ;to-tag=ff87ff\n"
        "\n"
    ))
    first = Replaces.parse(message.headers.get("Replaces"))
    assert (first.call_id, first.to_tag, first.from_tag, first.early_only) == (
        "98732@sip.example.com", "ff87ff", "r33th4x0r", False)

    early = Replaces.parse("12adf2f34456gs5;to-tag=12345;from-tag=54321;early-only")
    assert (early.call_id, early.to_tag, early.from_tag, early.early_only) == (
        "12adf2f34456gs5", "12345", "54321", True)
    assert str(early) == "12adf2f34456gs5;to-tag=12345;from-tag=54321;early-only"

    old = Replaces.parse("87134@171.161.34.23;to-tag=24796;from-tag=0")
    assert (old.call_id, old.to_tag, old.from_tag) == ("87134@171.161.34.23", "24796", "0")
    # §6.1: a tag of "0" matches an RFC 2543 peer's missing tag
    dialog = Dialog("87134@171.161.34.23", "24796", None, "sip:b@h", "sip:a@h", "sip:a@h", 1)
    assert old.names(dialog)


@pytest.mark.parametrize("text", [
    "",
    "98732@sip.example.com",  # no tags at all
    "98732@sip.example.com;to-tag=a",  # no from-tag
    "98732@sip.example.com;from-tag=a",  # no to-tag
    "98732@sip.example.com;to-tag=a;to-tag=b;from-tag=c",  # "exactly one to-tag"
    "98732@sip.example.com;to-tag=a;from-tag=c;from-tag=c",
    "987 32@sip.example.com;to-tag=a;from-tag=c",  # a blank in the Call-ID
    "a@b@c;to-tag=a;from-tag=c",  # callid = word [ "@" word ]
    "98732@sip.example.com;to-tag=;from-tag=c",
    "98732@sip.example.com;to-tag=\"a\";from-tag=c",  # a token, not a quoted string
    "98732@sip.example.com;to-tag=a;from-tag=c;early-only=yes",
    "98732@sip.example.com;to-tag=a;from-tag=c;;",
])
def test_malformed_replaces_is_refused(text):
    with pytest.raises(ParseError) as raised:
        Replaces.parse(text)
    assert raised.value.status == 400


def test_replaces_names_the_dialog_as_its_recipient_holds_it():
    """RFC 3891 §3: to-tag is the recipient's (local) tag, from-tag its peer's."""
    ours = Dialog("c@h", local_tag="L", remote_tag="R", local_uri="sip:p@h",
                  remote_uri="sip:x@h", remote_target="sip:x@h", local_seq=1)
    assert Replaces("c@h", to_tag="L", from_tag="R").names(ours)
    assert not Replaces("c@h", to_tag="R", from_tag="L").names(ours)  # swapped
    assert not Replaces("C@h", to_tag="L", from_tag="R").names(ours)  # Call-ID: exact
    assert not Replaces("c@h", to_tag="L", from_tag="0").names(ours)
    # what the peer of a dialog would write for it
    theirs = Dialog("c@h", local_tag="R", remote_tag="L", local_uri="sip:x@h",
                    remote_uri="sip:p@h", remote_target="sip:p@h", local_seq=1)
    assert Replaces.of(theirs).names(ours)


# -- RFC 3892 ---------------------------------------------------------------------------------


def test_referred_by_with_its_cid():
    value = ReferredBy.parse(
        '<sip:referrer@referrer.example>;cid="20398823.2UWQFN309shb3@referrer.example"')
    assert str(value.address.uri) == "sip:referrer@referrer.example"
    assert value.cid == "20398823.2UWQFN309shb3@referrer.example"
    assert ReferredBy.parse("sip:1001@127.0.0.1").cid is None


# -- what a REFER must carry (RFC 3515 §2.4.1, RFC 4488) ---------------------------------------


def refer_with(*lines: str) -> Request:
    head = F1.decode().split("\r\n")
    kept = [line for line in head[:-2] if not line.startswith("Refer-To:")]
    return parse(("\r\n".join(kept + list(lines)) + "\r\n\r\n").encode())


@pytest.mark.parametrize("lines", [
    (),  # no Refer-To
    ("Refer-To: sip:a@h", "Refer-To: sip:b@h"),  # two
    ("Refer-To: <sip:a@h>, <sip:b@h>",),  # two on one line
    ("Refer-To: ",),
    ("Refer-To: <sip:a@h",),
    ("Refer-To: *",),
    ("Refer-To: <sip:a@h?Replaces=x%3Bto-tag%3D1>",),  # Replaces without from-tag
    ("Refer-To: <sip:a@h?Replaces=x%3Bto-tag%3D1%3Bfrom-tag%3D2&Replaces=y%3Bto-tag%3D1"
     "%3Bfrom-tag%3D2>",),
    ("Refer-To: <sip:a@h?=x>",),
    ("Refer-To: sip:a@h", "Referred-By: <sip:b@h"),
    ("Refer-To: sip:a@h", "Refer-Sub: maybe"),
])
def test_a_refer_without_one_good_refer_to_is_answered_400(lines):
    with pytest.raises(ParseError) as raised:
        Refer.from_request(refer_with(*lines))
    assert raised.value.status == 400
    assert raised.value.partial is not None  # enough to answer


def test_refer_sub_false_asks_for_no_notifies():
    """RFC 4488 §4."""
    assert not Refer.from_request(refer_with("Refer-To: sip:a@h", "Refer-Sub: false")).subscription
    assert Refer.from_request(refer_with("Refer-To: sip:a@h", "Refer-Sub: true")).subscription
    # the compact form r: is Refer-To (RFC 3515 §2.1)
    assert Refer.from_request(refer_with("r: sip:a@h")).refer_to.user == "a"


# -- captured from real phones ----------------------------------------------------------------


def captured(name: str) -> Refer:
    request = parse((DATA / name).read_bytes())
    assert isinstance(request, Request) and request.method == "REFER"
    return Refer.from_request(request)


def test_baresip_blind_transfer():
    """baresip 1.0.0's ctrl_tcp "transfer sip:1003@<pbx>": an addr-spec, nothing else."""
    refer = captured("refer_baresip_1.0.0_blind.sip")
    assert refer.refer_to.user == "1003"
    assert refer.refer_to.target() == "sip:1003@127.0.0.1:44163"
    assert refer.refer_to.replaces is None and refer.refer_to.embedded == []
    assert refer.referred_by is None  # baresip names no referrer
    assert refer.subscription and refer.cseq == 57746


def test_linphone_attended_transfer():
    """linphonec 5.1.65's "transfer 1 --to-call 2": Replaces (escaped in lower case)
    naming the stand-in PBX's dialog of the second call, to-tag the PBX's own tag."""
    refer = captured("refer_linphone_5.1.65_attended.sip")
    assert refer.refer_to.target() == "sip:1003@127.0.0.1"
    assert refer.refer_to.user == "1003"
    assert refer.refer_to.replaces == Replaces(
        "W~RlBtUnVJ", to_tag="ca5f30160412", from_tag="gjkjCzQ6k")
    assert str(refer.referred_by.address.uri) == "sip:1001@127.0.0.1"
    pbx_side = Dialog("W~RlBtUnVJ", local_tag="ca5f30160412", remote_tag="gjkjCzQ6k",
                      local_uri="sip:1003@127.0.0.1", remote_uri="sip:1001@127.0.0.1",
                      remote_target="sip:1001@127.0.0.1:42094", local_seq=1)
    assert refer.refer_to.replaces.names(pbx_side)

"""The parser against RFC 4475 torture messages and captured REGISTERs of real phones."""

from pathlib import Path

import pytest

from sipd.sip.headers import URI, Credentials, CSeq, NameAddr, Via, parse_params
from sipd.sip.message import Headers, ParseError, Request, Response, parse, split_list

DATA = Path(__file__).resolve().parent.parent / "data"


def crlf(text: str) -> bytes:
    """Test vectors are written with LF; the wire has CRLF."""
    return text.replace("\n", "\r\n").encode("utf-8")


# RFC 4475 §3.1.1.1 "A Short Tortuous INVITE" (wsinv): odd spacing, folding,
# compact forms, case, leading zeros, unknown headers.
WSINV = crlf(
    "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\n"
    "TO :\n"
    " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\n"
    'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>\n'
    "  ;\n"
    "  tag = 98asjd8\n"
    "MaX-fOrWaRdS: 0068\n"
    "Call-ID: wsinv.ndaksdj@192.0.2.1\n"
    "Content-Length   : 150\n"
    "cseq: 0009\n"
    "  INVITE\n"
    "Via  : SIP  /   2.0\n"
    " /UDP\n"
    "    192.0.2.2;branch=390skdjuw\n"
    "s :\n"
    "NewFangledHeader:   newfangled value\n"
    " continued newfangled value\n"
    "UnknownHeaderWithUnusualValue: ;;,,;;,;\n"
    "Content-Type: application/sdp\n"
    "Route:\n"
    " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\n"
    "v:  SIP  / 2.0  / TCP     spindle.example.com   ;\n"
    "  branch  =   z9hG4bK9ikj8  ,\n"
    " SIP  /    2.0   / UDP  192.168.255.111   ; branch=\n"
    " z9hG4bK30239\n"
    'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =\n'
    "      newvalue ;\n"
    "  secondparam ; q = 0.33\n"
    "\n"
    "v=0\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.3\n"
    "s=-\n"
    "c=IN IP4 192.0.2.4\n"
    "t=0 0\n"
    "m=audio 49217 RTP/AVP 0 12\n"
    "m=video 3227 RTP/AVP 31\n"
    "a=rtpmap:31 LPC\n"
)

# RFC 4475 §3.1.1.5 "Use of % When It Is Not an Escape" (esc02)
ESC02 = crlf(
    "RE%47IST%45R sip:registrar.example.com SIP/2.0\n"
    'To: "%Z%45" <sip:resource@example.com>\n'
    'From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23\n'
    "Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf\n"
    "Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234\n"
    "CSeq: 29344 RE%47IST%45R\n"
    "Max-Forwards: 70\n"
    "Contact: <sip:alias1@host1.example.com>\n"
    "C%6Fntact: <sip:alias2@host2.example.com>\n"
    "Contact: <sip:alias3@host3.example.com>\n"
    "l: 0\n"
    "\n"
)

# RFC 4475 §3.1.1.6 "Message with No LWS between Display Name and <" (lwsdisp)
LWSDISP = crlf(
    "OPTIONS sip:user@example.com SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: caller<sip:caller@example.com>;tag=323\n"
    "Max-Forwards: 70\n"
    "Call-ID: lwsdisp.1234abcd@funky.example.com\n"
    "CSeq: 60 OPTIONS\n"
    "Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw\n"
    "l: 0\n"
    "\n"
)

# RFC 4475 §3.1.1.13 "Empty Reason Phrase" (noreason)
NOREASON = crlf(
    "SIP/2.0 100 \n"
    "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\n"
    "Call-ID: noreason.asndj203insdf99223ndf\n"
    "CSeq: 35 INVITE\n"
    "From: <sip:user@example.com>;tag=11141343\n"
    "To: <sip:user@example.edu>;tag=2229\n"
    "Content-Length: 0\n"
    "\n"
)

REGISTER = (
    "REGISTER sip:pbx.test SIP/2.0\n"
    "Via: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKreg1;rport\n"
    "From: <sip:1002@pbx.test>;tag=a1\n"
    "To: <sip:1002@pbx.test>\n"
    "Call-ID: reg-1@192.0.2.7\n"
    "CSeq: 1 REGISTER\n"
    "Max-Forwards: 70\n"
    "{extra}"
    "\n"
)


def test_tortuous_invite_parses():
    message = parse(WSINV)
    assert isinstance(message, Request)
    assert message.method == "INVITE"
    assert message.headers.get("Max-Forwards") == "0068"
    to = NameAddr.parse(message.headers.get("To"))
    assert to.tag == "1918181833n"
    assert to.uri.user == "vivekg"
    sender = NameAddr.parse(message.headers.get("From"))
    assert sender.display_name == 'J Rosenberg \\"'
    assert sender.tag == "98asjd8"
    assert CSeq.parse(message.headers.get("CSeq")) == CSeq(9, "INVITE")
    vias = [Via.parse(v) for v in message.headers.get_all("Via")]
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    contact = NameAddr.parse(message.headers.get("Contact"))
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert message.headers.get("Subject") == ""
    assert message.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert len(message.body) == 150


def test_percent_that_is_not_an_escape():
    message = parse(ESC02)
    assert message.method == "RE%47IST%45R"
    # "C%6Fntact" is another header, not Contact: names are not unescaped.
    assert message.headers.get_all("Contact") == [
        "<sip:alias1@host1.example.com>",
        "<sip:alias3@host3.example.com>",
    ]
    assert NameAddr.parse(message.headers.get("To")).display_name == "%Z%45"


def test_no_space_between_display_name_and_angle():
    message = parse(LWSDISP)
    sender = NameAddr.parse(message.headers.get("From"))
    assert sender.display_name == "caller"
    assert str(sender.uri) == "sip:caller@example.com"
    # To is an addr-spec without brackets (§20.39 allows it).
    assert str(NameAddr.parse(message.headers.get("To")).uri) == "sip:user@example.com"


def test_empty_reason_phrase():
    message = parse(NOREASON)
    assert isinstance(message, Response)
    assert (message.status, message.reason) == (100, "")


def test_extra_octets_after_body_are_dropped_over_udp():
    # RFC 4475 §3.1.1.8 (dblreq): bytes past Content-Length are discarded.
    data = crlf(REGISTER.format(extra="Content-Length: 0\n")) + b"INVITE sip:x SIP/2.0\r\n"
    assert parse(data).body == b""


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        # RFC 4475 §3.1.2.2 (clerr): Content-Length larger than the message
        (
            crlf(REGISTER.format(extra="Content-Length: 9999\n")) + b"v=0",
            400,
            "body shorter than Content-Length",
        ),
        # RFC 4475 §3.1.2.3 (ncl): negative Content-Length
        (
            crlf(REGISTER.format(extra="Content-Length: -999\n")),
            400,
            "Content-Length is not a number",
        ),
        # RFC 4475 §3.1.2.9 (lwsstart): several SP in the request line
        (crlf("REGISTER  sip:pbx.test SIP/2.0\nCall-ID: x\n\n"), 400, "malformed start line"),
        # RFC 4475 §3.1.2.7 (ltgtruri) is handled later: <...> is not a URI
        # RFC 4475 §3.1.2.16 (badvers): unknown protocol version
        (crlf("REGISTER sip:pbx.test SIP/7.0\nCall-ID: x\n\n"), 505, "SIP version not supported"),
        (b"\x00\x01\x02garbage", 400, "no blank line after the headers"),
        (crlf("hello\n\n"), 400, "malformed start line"),
        (
            b"REGISTER sip:a SIP/2.0\r\n" + b"X: " + b"a" * 70000 + b"\r\n\r\n",
            513,
            "message too large",
        ),
    ],
)
def test_invalid_messages(data, status, message):
    with pytest.raises(ParseError) as caught:
        parse(data)
    assert caught.value.status == status
    assert str(caught.value) == message


def test_unterminated_quote_in_display_name_is_an_error():
    # RFC 4475 §3.1.2.6 (quotbal)
    with pytest.raises(ParseError):
        NameAddr.parse('"Mr. J. User <sip:j.user@example.com>')


def test_request_uri_in_angle_brackets_is_not_a_uri():
    # RFC 4475 §3.1.2.7 (ltgtruri)
    with pytest.raises(ParseError):
        URI.parse("<sip:user@example.com>")


def test_partial_message_is_kept_for_an_answer():
    data = crlf(REGISTER.format(extra="Content-Length: abc\n"))
    with pytest.raises(ParseError) as caught:
        parse(data)
    assert caught.value.partial.headers.get("Call-ID") == "reg-1@192.0.2.7"


def test_contact_parameter_vs_url_parameter():
    # RFC 4475 §3.3.12 (cparam01): without brackets the parameter is the header's
    addr_spec = NameAddr.parse("sip:+19725552222@gw1.example.net;unknownparam")
    assert addr_spec.params == {"unknownparam": None}
    assert addr_spec.uri.params == {}
    # RFC 4475 §3.3.13 (cparam02): inside brackets it belongs to the URI
    name_addr = NameAddr.parse("<sip:+19725552222@gw1.example.net;unknownparam>")
    assert name_addr.uri.params == {"unknownparam": None}
    assert name_addr.params == {}


def test_escaped_headers_in_contact_uri():
    # RFC 4475 §3.3.14 (regescrt)
    contact = NameAddr.parse("<sip:user@host?Route=%3Csip:sip.example.com%3E>")
    assert contact.uri.headers == "Route=%3Csip:sip.example.com%3E"
    assert str(contact.uri) == "sip:user@host?Route=%3Csip:sip.example.com%3E"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sip:1002@pbx.test", ("sip", "1002", "pbx.test", None)),
        ("sips:1002@[2001:db8::1]:5061;transport=tls", ("sips", "1002", "[2001:db8::1]", 5061)),
        ("sip:%31002@pbx.test", ("sip", "1002", "pbx.test", None)),  # §19.1.4: %31 is "1"
        ("SIP:Alice@EXAMPLE.com:5070", ("sip", "Alice", "example.com", 5070)),
        ("sip:pbx.test", ("sip", None, "pbx.test", None)),
    ],
)
def test_uris(text, expected):
    uri = URI.parse(text)
    assert (uri.scheme, uri.user, uri.host, uri.port) == expected


def test_uri_round_trip_and_aor():
    uri = URI.parse("sip:1002@192.0.2.7:5062;transport=udp;ob")
    assert str(uri) == "sip:1002@192.0.2.7:5062;transport=udp;ob"
    assert uri.address_of_record() == "sip:1002@192.0.2.7"


def test_other_schemes_are_opaque():
    uri = URI.parse("tel:+358-555-1234567")
    assert not uri.is_sip
    assert str(uri) == "tel:+358-555-1234567"


def test_list_headers_split_outside_quotes_and_brackets():
    assert split_list('"a, b" <sip:x@y;p=1,2>, <sip:z@w>') == [
        '"a, b" <sip:x@y;p=1,2>',
        "<sip:z@w>",
    ]


def test_compact_and_case_insensitive_names():
    headers = Headers()
    headers.add("i", "abc")
    headers.add("CALL-id", "def")
    assert headers.get_all("Call-ID") == ["abc", "def"]
    assert headers.get("call-id") == "abc"


def test_authorization_parsing():
    credentials = Credentials.parse(
        'Digest username="1002",realm="pbx.test",cnonce="6b8b4567",nc=00000001,qop=auth,'
        'uri="sip:127.0.0.1:15060",nonce="AAAB",response="0a70",algorithm=MD5,opaque="e7"'
    )
    assert credentials.scheme == "Digest"
    assert credentials.get("username") == "1002"
    assert credentials.get("nc") == "00000001"
    assert credentials.get("uri") == "sip:127.0.0.1:15060"


def test_params_with_quoted_values():
    assert parse_params(
        ';+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>";reg-id=1'
    ) == {
        "+sip.instance": '"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"',
        "reg-id": "1",
    }


def test_serialize_round_trip():
    original = parse(crlf(REGISTER.format(extra="Expires: 300\nContent-Length: 0\n")))
    again = parse(bytes(original))
    assert again.headers.items == original.headers.items
    assert bytes(again) == bytes(original)


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("register_*.sip")))
def test_captured_registers_of_real_phones(name):
    message = parse((DATA / name).read_bytes())
    assert isinstance(message, Request) and message.method == "REGISTER"
    to = NameAddr.parse(message.headers.get("To"))
    assert to.uri.user and to.uri.is_sip
    for value in message.headers.get_all("Contact"):
        assert NameAddr.parse(value).uri.is_sip
    via = Via.parse(message.headers.get("Via"))
    assert via.branch.startswith("z9hG4bK")
    assert "rport" in via.params
    assert parse(bytes(message)).headers.items == message.headers.items


@pytest.mark.parametrize(
    "text, source",
    [
        # RFC 3581 §4: an empty rport is filled and received= added (the fast path).
        ("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa;rport", ("198.51.100.9", 40123)),
        # rport not last, or in another spelling: written out again.
        ("SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bKa", ("198.51.100.9", 40123)),
        ("SIP/2.0/udp 10.0.0.5 ; branch=z9hG4bKa ; RPORT", ("198.51.100.9", 40123)),
        # §18.2.1: no rport, sent-by is not the source: received= only.
        ("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa", ("198.51.100.9", 5060)),
        # sent-by is the source: nothing to add.
        ("SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bKa", ("198.51.100.9", 5060)),
        ("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKa", ("2001:db8::1", 5060)),
        # A received= already there (a proxy before us) is replaced.
        ("SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKa;received=192.0.2.1;rport", ("198.51.100.9", 1)),
        ("SIP/2.0/UDP 10.0.0.5;rport=7;branch=z9hG4bKa", ("198.51.100.9", 40123)),
    ],
)
def test_stamped_via_text_says_what_stamp_via_says(text, source):
    from sipd.sip.responses import stamp_via, stamped_text

    via = Via.parse(text)
    stamped = Via.parse(stamped_text(text, via, source))
    assert stamped == stamp_via(via, source)

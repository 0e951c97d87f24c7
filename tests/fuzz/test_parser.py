"""The parser's contract (h11's fuzz harness): parse, or raise ParseError, never anything else.

Also for the header parsers the handler applies to what a peer sent, and for
serializing what was parsed. The explicit examples are what this harness found
first: "Content-Length: ²" (str.isdigit() is true, int() refuses it) and
numbers of thousands of digits (int() refuses those since Python 3.11).
"""

from hypothesis import example, given

from sipd.sip.headers import URI, Credentials, CSeq, NameAddr, Via, parse_expires
from sipd.sip.message import ParseError, Request, Response, parse
from tests.fuzz.corpus import FUZZ, SEEDS, messages

HEADER_PARSERS = {
    "Via": Via.parse,
    "From": NameAddr.parse,
    "To": NameAddr.parse,
    "Contact": NameAddr.parse,
    "CSeq": CSeq.parse,
    "Expires": parse_expires,
    "Authorization": Credentials.parse,
    "Proxy-Authorization": Credentials.parse,
}


def check(data: bytes, stream: bool) -> None:
    try:
        message = parse(data, stream=stream)
    except ParseError as error:
        assert isinstance(error.status, int) and 400 <= error.status < 600
        return
    assert isinstance(message, Request | Response)
    assert isinstance(bytes(message), bytes)
    if isinstance(message, Request):
        try:
            URI.parse(message.uri)
        except ParseError:
            pass
    for name, value in message.headers.items:
        parser = HEADER_PARSERS.get(name)
        if parser is None:
            continue
        try:
            parser(value)
        except ParseError:
            pass


@FUZZ
@given(messages)
@example(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: \xc2\xb2\r\n\r\n")
@example(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n")
@example(b"REGISTER sip:a SIP/2.0\r\nExpires: \xc2\xb2\r\n\r\n")
@example(b"REGISTER sip:a SIP/2.0\r\nExpires: " + b"9" * 5000 + b"\r\n\r\n")
def test_parse_or_parse_error(data):
    check(data, stream=False)
    check(data, stream=True)


def test_seeds_parse():
    for seed in SEEDS:
        parse(seed)

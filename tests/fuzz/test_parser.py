"""The parser's contract (h11's fuzz harness): parse, or raise ParseError, never anything else.

Also for the header parsers the handler applies to what a peer sent, and for
serializing what was parsed. The explicit examples are what this harness found
first: "Content-Length: ²" (str.isdigit() is true, int() refuses it) and
numbers of thousands of digits (int() refuses those since Python 3.11).
"""

import subprocess
import sys
from pathlib import Path

from hypothesis import example, given

from sipd.sip.headers import URI, Credentials, CSeq, NameAddr, Via, parse_expires
from sipd.sip.message import ParseError, Request, Response, parse
from sipd.sip.refer import Refer, ReferredBy, ReferTo, Replaces, parse_sipfrag
from tests.fuzz.corpus import FUZZ, SEEDS, messages

ROOT = Path(__file__).resolve().parents[2]

HEADER_PARSERS = {
    "Via": Via.parse,
    "From": NameAddr.parse,
    "To": NameAddr.parse,
    "Contact": NameAddr.parse,
    "CSeq": CSeq.parse,
    "Expires": parse_expires,
    "Authorization": Credentials.parse,
    "Proxy-Authorization": Credentials.parse,
    "Refer-To": ReferTo.parse,
    "Referred-By": ReferredBy.parse,
    "Replaces": Replaces.parse,
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
        if message.method == "REFER":
            try:
                Refer.from_request(message)
            except ParseError:
                pass
    if message.body:
        try:
            parse_sipfrag(message.body)
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


# Inputs that once made a regex backtrack exponentially (NAME_ADDR_RE: one
# datagram with "To: aaaa...a@", 40 letters, froze sipd for days), and
# long runs of each character class at the limit of a message.
PATHOLOGICAL = [
    "a" * 40 + "@",
    "a " * 40 + "@",
    "a\t" * 40 + "\x00",
    '"x" ' + "a" * 40 + "@",
    *(
        unit * (20000 // len(unit)) + end
        for unit in ("a", "a ", "%41", ";a", "a;", ",", '\\"', "a=a;", "a,a ")
        for end in ("", "@", '"')
    ),
]


def test_no_header_value_makes_a_regex_backtrack_for_ever():
    """In a child process, so that a regression fails in seconds instead of hanging."""
    code = (
        "import sys, time\n"
        "from sipd.sip.headers import URI, Credentials, NameAddr, Via, parse_params\n"
        "from sipd.sip.message import ParseError\n"
        "from sipd.sip.refer import ReferTo, Replaces\n"
        "from tests.fuzz.test_parser import PATHOLOGICAL\n"
        "for text in PATHOLOGICAL:\n"
        "    for prefix in ('', 'sip:', 'Digest ', 'SIP/2.0/UDP h;', '<sip:a@b>'):\n"
        "        for parser in (NameAddr.parse, Via.parse, Credentials.parse, URI.parse,\n"
        "                       parse_params, ReferTo.parse, Replaces.parse):\n"
        "            started = time.perf_counter()\n"
        "            try:\n"
        "                parser(prefix + text)\n"
        "            except ParseError:\n"
        "                pass\n"
        "            if time.perf_counter() - started > 1:\n"
        "                sys.exit(f'{parser.__qualname__} took over 1 s on {(prefix + text)[:60]!r}')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr

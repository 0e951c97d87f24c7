"""The TCP framer's contract: whole or split at any byte, the same items or ParseError."""

import time

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sipd.sip.framing import StreamFramer
from sipd.sip.message import MAX_MESSAGE, ParseError
from tests.fuzz.corpus import FUZZ, SEEDS, messages


def frame(chunks) -> tuple[list, object]:
    """(items, the error or None, bytes still buffered) feeding `chunks` in order."""
    framer = StreamFramer()
    items = []
    try:
        for chunk in chunks:
            items += framer.feed(chunk)
    except ParseError as error:
        return items, type(error)
    return items, framer.pending


def normal(items):
    return [item if isinstance(item, bytes) else "ping" for item in items]


def cuts(stream: bytes) -> list[int]:
    """Every byte of a stream up to 4 KB; beyond, a stride plus both sides of every CRLF.

    (Every byte of a long stream is still covered by the byte-by-byte test.)
    """
    if len(stream) <= 4096:
        return list(range(len(stream) + 1))
    chosen = set(range(0, len(stream) + 1, len(stream) // 1024 + 1))
    at = stream.find(b"\r\n")
    while at >= 0 and len(chosen) < 4096:
        chosen.update((at, at + 1, at + 2))
        at = stream.find(b"\r\n", at + 1)
    chosen.add(len(stream))
    return sorted(c for c in chosen if c <= len(stream))


def check_splits(stream: bytes) -> None:
    whole_items, whole_end = frame([stream])
    assert all(len(item) <= MAX_MESSAGE for item in whole_items if isinstance(item, bytes))
    for cut in cuts(stream):
        items, end = frame([stream[:cut], stream[cut:]])
        if whole_end is ParseError or end is ParseError:
            # An error may come earlier or later, but only after the same messages.
            shorter = min(len(items), len(whole_items))
            assert normal(items)[:shorter] == normal(whole_items)[:shorter], cut
            continue
        assert normal(items) == normal(whole_items), cut
        assert end == whole_end, cut


@FUZZ
@given(st.lists(messages, min_size=1, max_size=3), st.sampled_from([b"", b"\r\n\r\n", b"\r\n"]))
@example([SEEDS[0]], b"\r\n\r\n")
def test_framer_whole_and_split_at_every_byte(parts, glue):
    check_splits(glue.join(parts))


@FUZZ
@given(messages)
def test_framer_byte_by_byte(data):
    whole_items, whole_end = frame([data])
    items, end = frame([data[i : i + 1] for i in range(len(data))])
    if whole_end is not ParseError and end is not ParseError:
        assert normal(items) == normal(whole_items)
        assert end == whole_end


def test_a_header_dribbled_byte_by_byte_costs_linear_time():
    """Slow senders: 64 KB fed one byte at a time (quadratic scanning took seconds)."""
    data = b"OPTIONS sip:a SIP/2.0\r\nX: " + b"a" * (MAX_MESSAGE - 100)
    framer = StreamFramer()
    started = time.process_time()
    for index in range(len(data)):
        assert framer.feed(data[index : index + 1]) == []
    assert time.process_time() - started < 1.0
    with pytest.raises(ParseError):
        framer.feed(b"a" * 200)

"""The message-summary body of RFC 3842 against the RFC's own examples."""

import pytest

from sipd.sip.mwi import CONTENT_TYPE, EVENT, MwiError, Summary, body, parse


def test_rfc3842_section_3_5_example_built_exactly():
    # RFC 3842 §3.5 / §5.2: 2 new and 8 old, of which 0 new and 2 old urgent.
    summary = Summary(new=2, old=8, new_urgent=0, old_urgent=2, account="sip:alice@vmail.example.com")
    assert body(summary) == (
        "Messages-Waiting: yes\r\n"
        "Message-Account: sip:alice@vmail.example.com\r\n"
        "Voice-Message: 2/8 (0/2)\r\n"
    )


def test_rfc3842_example_parsed_back():
    text = "Messages-Waiting: yes\r\nMessage-Account: sip:alice@vmail.example.com\r\nVoice-Message: 2/8 (0/2)\r\n"
    assert parse(text) == (True, Summary(2, 8, 0, 2, "sip:alice@vmail.example.com"))


def test_no_new_messages_says_no_and_omits_urgent_counts():
    assert body(Summary(new=0, old=3)) == "Messages-Waiting: no\r\nVoice-Message: 0/3\r\n"
    assert body(Summary()) == "Messages-Waiting: no\r\nVoice-Message: 0/0\r\n"


def test_round_trip_and_case_insensitive_names():
    for summary in (Summary(1, 0), Summary(0, 5), Summary(4, 2, 1, 0, "sip:1001@pbx")):
        waiting, back = parse(body(summary))
        assert waiting == summary.waiting and back == summary
    assert parse("messages-waiting: YES\nvoice-message: 1/0\nFax-Message: 2/0\n") == (True, Summary(1, 0))


@pytest.mark.parametrize("text", ["", "Voice-Message: 1/0\r\n", "Messages-Waiting: maybe\r\n",
                                  "Messages-Waiting: yes\r\nVoice-Message: one\r\n", "garbage\r\n"])
def test_malformed_bodies_refused(text):
    with pytest.raises(MwiError):
        parse(text)


def test_negative_counts_refused_and_names():
    with pytest.raises(ValueError):
        body(Summary(new=-1))
    assert EVENT == "message-summary"
    assert CONTENT_TYPE == "application/simple-message-summary"


# -- the subscription's terms (RFC 6665 §4.2.1.1, RFC 3842 §4.1) -------------------------


def test_granted_expires():
    from sipd.sip import mwi as m

    assert m.granted_expires(None) == 3600  # RFC 3842's default
    assert m.granted_expires(0) == 0  # an unsubscribe
    assert m.granted_expires(600) == 600
    assert m.granted_expires(86400) == m.MAX_EXPIRES  # shortened, the 200 says so
    with pytest.raises(ValueError):
        m.granted_expires(10)  # 423 Interval Too Brief


def test_subscription_state_and_notify_headers():
    from sipd.sip import mwi as m

    assert m.subscription_state(120) == "active;expires=120"
    assert m.subscription_state(0) == "terminated;reason=timeout"
    headers = dict(m.notify_headers(via="SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1",
                                    from_="<sip:1001@pbx>;tag=a", to="<sip:1001@pbx>;tag=b",
                                    call_id="c1", cseq=2, contact="<sip:pbx@127.0.0.1:5060>",
                                    state="active;expires=60"))
    assert headers["Event"] == "message-summary"
    assert headers["Content-Type"] == "application/simple-message-summary"
    assert headers["CSeq"] == "2 NOTIFY"

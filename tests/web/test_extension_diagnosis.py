"""The extension's page tells a phone that never reached the PBX from one that was
challenged and never answered (app/extensions/diagnosis.py), with rows in the
shape sipd writes them (sipd/unanswered.py: result "challenge", `times`)."""

from __future__ import annotations

import time

from core import accounts

NEVER_REACHED = "never reached the PBX: check its server address"
CHALLENGED = "never answered with credentials"


def challenge(rows, number="1002", times=1, ago=20, host="198.51.100.20", **fields):
    fields.setdefault("user_agent", "baresip v1.0.0 (x86_64/Linux)")
    return rows.attempt(number, result="challenge", reason="never answered the challenge",
                        source_host=host, source_port=5060, times=times,
                        created_at=time.time() - ago, **fields)


def page_of(client, number="1002") -> str:
    response = client.get(f"/extensions/{number}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def diagnosis(page: str) -> str:
    assert 'id="unanswered"' in page, page
    start = page.index('id="unanswered"')
    return page[start:page.index("</div>", start)]


def test_no_request_at_all_is_a_phone_that_never_reached_the_pbx(admin_client, rows):
    rows.extension("1002")
    page = page_of(admin_client)
    assert NEVER_REACHED in page
    assert 'id="unanswered"' not in page


def test_a_phone_challenged_and_never_answering_is_told_apart(admin_client, rows):
    rows.extension("1002")
    challenge(rows, times=2, ago=60)
    challenge(rows, times=1, ago=20)
    page = page_of(admin_client)
    assert NEVER_REACHED not in page
    text = diagnosis(page)
    assert ("A phone at 198.51.100.20:5060 UDP (baresip v1.0.0 (x86_64/Linux)) was challenged"
            " 3 times for 1002 and never answered with credentials.") in text
    assert ("It may not support the digest algorithm offered (MD5), or it has no password"
            " for 1002.") in text
    assert "SHA-256" not in text  # MD5 alone is offered: nothing to say about SHA-256
    table = page[page.index('id="attempts"'):]
    assert ">no answer<" in table and "never answered the challenge ×2" in table


def test_sha256_offered_names_the_phones_that_cannot_answer_it(admin_client, rows):
    rows.extension("1002")
    accounts.set_digest_algorithms("1002", "SHA-256,MD5")
    challenge(rows)
    text = diagnosis(page_of(admin_client))
    assert "was challenged 1 time for 1002" in text
    assert "the digest algorithm offered (SHA-256, MD5)" in text
    assert "Debian 12's baresip 1.0" in text and "pbxctl ext digest 1002 MD5" in text


def test_a_phone_that_answered_since_or_is_registered_is_not_a_failing_one(admin_client, rows):
    extension = rows.extension("1002")
    challenge(rows, ago=60)
    rows.attempt("1002", result="success", reason="registered", source_host="198.51.100.20",
                 created_at=time.time() - 10)
    assert 'id="unanswered"' not in page_of(admin_client)
    # a challenge row newer than a success from an address a live binding holds
    challenge(rows, host="192.0.2.10", ago=5)
    rows.binding(extension, source_host="192.0.2.10")
    assert 'id="unanswered"' not in page_of(admin_client)


def test_each_failing_address_is_named_and_other_numbers_stay_out(admin_client, rows):
    rows.extension("1002")
    rows.extension("1003")
    challenge(rows, host="198.51.100.20", ago=30)
    challenge(rows, host="198.51.100.21", ago=20, times=4)
    challenge(rows, number="1003", host="198.51.100.22", ago=10)
    page = page_of(admin_client)
    assert page.count('id="unanswered"') == 2
    assert "198.51.100.21:5060 UDP (baresip v1.0.0 (x86_64/Linux)) was challenged 4 times" in page
    assert "198.51.100.20:5060 UDP (baresip v1.0.0 (x86_64/Linux)) was challenged 1 time" in page
    assert "198.51.100.22" not in page


def test_the_diagnosis_in_russian_and_uzbek(admin_client, rows):
    rows.extension("1002")
    accounts.set_digest_algorithms("1002", "SHA-256")
    challenge(rows, times=3)
    admin_client.post("/account/language", data={"language": "ru"})
    text = diagnosis(page_of(admin_client))
    assert "получил 3 запроса аутентификации для 1002 и ни разу не ответил" in text
    assert "предложенный алгоритм digest (SHA-256)" in text
    admin_client.post("/account/language", data={"language": "uz"})
    text = diagnosis(page_of(admin_client))
    assert "1002 uchun 3 marta autentifikatsiya soʻrovini oldi" in text
    assert "pbxctl ext digest 1002 MD5" in text

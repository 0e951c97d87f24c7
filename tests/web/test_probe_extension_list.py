"""Probe finding 9, the panel's part: after an import of 100,000 extensions the list
page served 32 MB in 5.5 s. It is paged (100 a page) and searchable (number, name),
and the registration columns stay right on every page (docs/security.md)."""

from __future__ import annotations

import re
import time

from panel_testing import REALM

from core.credentials import ha1_pair
from core.models import Extension, db

PAGE = 100


def many(count: int, first: int = 2000, name=lambda i: f"Staff {i}") -> None:
    """`count` extensions as a bulk import writes them (numbers first, first + 1, ...)."""
    rows = [{"number": str(first + i), "name": name(i), "enabled": True,
             **ha1_pair(str(first + i), REALM, "correct-horse-1")} for i in range(count)]
    with db.atomic():
        for start in range(0, count, 500):
            Extension.insert_many(rows[start:start + 500]).execute()


def numbers(html: str) -> list[str]:
    return re.findall(r'<tr id="ext-(\d+)"', html)


def get(client, **args):
    response = client.get("/extensions/", query_string=args)
    return response, response.data.decode()


def test_the_list_is_paged(admin_client):
    many(250)
    response, html = get(admin_client)
    assert response.status_code == 200
    assert numbers(html) == [str(n) for n in range(2000, 2000 + PAGE)]
    assert "1–100 of 250 extensions · page 1 of 3" in html
    assert 'rel="next" href="/extensions/?page=2"' in html and 'rel="prev"' not in html
    assert "250 extensions · 0 registered" in html

    _, html = get(admin_client, page=2)
    assert numbers(html) == [str(n) for n in range(2100, 2200)]
    assert 'rel="prev" href="/extensions/?page=1"' in html
    _, html = get(admin_client, page=3)
    assert numbers(html) == [str(n) for n in range(2200, 2250)]
    assert 'rel="next"' not in html
    # Past the end, or nonsense: the nearest page, never an error.
    assert numbers(get(admin_client, page=99)[1]) == numbers(html)
    assert numbers(get(admin_client, page="x")[1])[0] == "2000"


def test_a_page_stays_small_with_100000_extensions(admin_client):
    many(100_000, first=200000)
    response, html = get(admin_client)
    assert len(numbers(html)) == PAGE
    assert "1–100 of 100000 extensions · page 1 of 1000" in html
    # The 32 MB page was 330 bytes an extension; this one has a hundred of them.
    assert len(response.data) < 100_000
    assert numbers(get(admin_client, page=1000)[1])[-1] == "299999"


def test_numeric_order_runs_across_pages(admin_client, rows):
    many(PAGE, first=1000)  # 1000-1099
    for number in ("99", "201"):
        rows.extension(number)
    first = numbers(get(admin_client)[1])
    assert first[:3] == ["99", "201", "1000"]
    assert numbers(get(admin_client, page=2)[1]) == ["1098", "1099"]


def test_registrations_are_shown_on_the_page_they_belong_to(admin_client, rows):
    many(150)  # 2000-2149: 2120 is on page 2
    on_page_2 = Extension.by_number("2120")
    rows.binding(on_page_2, contact="sip:2120@198.51.100.20:5060", source_host="198.51.100.20",
                 user_agent="Yealink SIP-T46S")
    rows.binding(on_page_2, contact="sip:2120@198.51.100.21:5060", call_id="second")
    # Expired, not reaped yet: neither shown nor counted.
    rows.binding(Extension.by_number("2001"), expires_at=time.time() - 1)

    _, html = get(admin_client)
    assert "150 extensions · 1 registered" in html
    assert 'data-status="registered"' not in html
    row_2001 = html[html.index('id="ext-2001"'):html.index('id="ext-2002"')]
    assert 'data-status="unregistered"' in row_2001 and "192.0.2.10" not in row_2001

    _, html = get(admin_client, page=2)
    row = html[html.index('id="ext-2120"'):html.index('id="ext-2121"')]
    assert 'data-status="registered"' in row and "Registered ×2" in row
    assert "198.51.100.20:5062" in row and "Yealink SIP-T46S" in row
    assert "sip:2120@198.51.100.21:5060" in row
    assert html.count('data-status="registered"') == 1
    # Found by a search too, with its bindings.
    _, html = get(admin_client, q="2120")
    assert numbers(html) == ["2120"] and "Registered ×2" in html


def test_search_by_number(admin_client, rows):
    many(300)  # 2000-2299
    _, html = get(admin_client, q="212")
    assert numbers(html) == ["2120", "2121", "2122", "2123", "2124", "2125", "2126", "2127",
                             "2128", "2129", "2212"]
    assert "1–11 of 11 extensions" in html
    assert 'value="212"' in html  # the box keeps what was searched
    assert "300 extensions · 0 registered" in html  # the summary is the whole PBX


def test_search_by_name_ignores_case(admin_client, rows):
    many(120)
    rows.extension("1002", name="Alice Martin")
    rows.extension("1003", name="Bob")
    rows.extension("1004", name="alicia (front desk)")
    assert numbers(get(admin_client, q="ALIC")[1]) == ["1002", "1004"]
    assert numbers(get(admin_client, q="front desk")[1]) == ["1004"]
    assert numbers(get(admin_client, q="  Bob ")[1]) == ["1003"]


def test_search_results_are_paged_and_the_links_keep_the_search(admin_client):
    many(230, name=lambda i: "Sales" if i % 2 else "Support")
    response, html = get(admin_client, q="sales")
    assert len(numbers(html)) == PAGE and numbers(html)[0] == "2001"
    assert "1–100 of 115 extensions · page 1 of 2" in html
    assert 'rel="next" href="/extensions/?page=2&amp;q=sales"' in html
    _, html = get(admin_client, q="sales", page=2)
    assert len(numbers(html)) == 15 and numbers(html)[-1] == "2229"
    assert 'rel="prev" href="/extensions/?page=1&amp;q=sales"' in html


def test_search_wildcards_are_plain_characters(admin_client, rows):
    rows.extension("1002", name="100% sales")
    rows.extension("1003", name="a_b")
    rows.extension("1004", name="axb")
    assert numbers(get(admin_client, q="%")[1]) == ["1002"]
    assert numbers(get(admin_client, q="a_b")[1]) == ["1003"]


def test_search_without_a_match(admin_client, rows):
    rows.extension("1002", name="Alice")
    response, html = get(admin_client, q="<b>nobody</b>")
    assert response.status_code == 200 and numbers(html) == []
    assert "No extension matches “&lt;b&gt;nobody&lt;/b&gt;”." in html
    assert "<b>nobody</b>" not in html
    assert 'href="/extensions/">Clear</a>' in html


def test_an_overlong_search_is_a_form_error(admin_client, rows):
    rows.extension("1002", name="Alice")
    response, html = get(admin_client, q="x" * 101)
    assert response.status_code == 400
    assert "Search for at most 100 characters." in html
    assert numbers(html) == ["1002"]


def test_a_viewer_can_search(client, auth, rows):
    rows.extension("1002", name="Alice")
    rows.extension("1003", name="Bob")
    auth.login_viewer()
    response = client.get("/extensions/?q=bob")
    assert response.status_code == 200 and numbers(response.data.decode()) == ["1003"]
    assert b"New extension" not in response.data

"""The panel in English, Uzbek and Russian (app/i18n.py): every page in each, the
catalogue's messages shown translated, the language kept per admin and taken from
the browser until chosen, form errors translated, times with their zone named."""

from __future__ import annotations

import json
import re
import time
from html import unescape
from html.parser import HTMLParser

import pytest
from panel_testing import ADMIN, VIEWER

from core import accounts
from core.forwarding import set_dnd, set_forward
from core.groups import create_group
from core.models import Admin, CallEvent
from tools import catalogues

# Every page an admin can GET, with rows behind it (see `populated`).
PAGES = [
    "/", "/extensions/", "/extensions/?q=nothing-matches", "/extensions/new",
    "/extensions/1002", "/extensions/1002/edit", "/extensions/1002/password",
    "/extensions/1002/delete", "/account", "/registrations/", "/calls/", "/calls/active",
    "/security/failures", "/security/bans", "/security/audit", "/settings/", "/admins/",
    "/admins/new", "/groups/", "/groups/new", "/groups/600", "/groups/600/edit",
    "/groups/600/delete", "/extensions/1002/forwarding", "/calls/1", "/calls/2",
    "/sounds/prompts", "/sounds/prompts/ru/vm-intro", "/sounds/music",
]
# No page may keep English text in Uzbek or Russian.
TRANSLATED = PAGES
# Words of English sentences that no Uzbek or Russian text of the panel contains.
ENGLISH = re.compile(r"\b(the|and|is|are|of|to|at|for|with|no|not|its|this|will|yet)\b", re.I)


class VisibleText(HTMLParser):
    """What a reader sees or hears: text, titles, labels and placeholders; not code or data."""

    SKIP = {"script", "style", "code"}

    def __init__(self):
        super().__init__()
        self.parts, self._skipping = [], 0
        self._other_language: list[str] = []  # open elements marked lang="..."

    def handle_starttag(self, tag, attrs):
        # Text marked with a language of its own (what a prompt says) is data, not the
        # panel's words; the page's own language is on <html>.
        if tag != "html" and dict(attrs).get("lang"):
            self._other_language.append(tag)
            self._skipping += 1
        if tag in self.SKIP:
            self._skipping += 1
        for name, value in attrs:
            if name in {"title", "aria-label", "placeholder", "data-label"} and value:
                self.parts.append(value)
        if tag == "input" and dict(attrs).get("type") == "submit":
            self.parts.append(dict(attrs).get("value") or "")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self._skipping:
            self._skipping -= 1
        if self._other_language and self._other_language[-1] == tag:
            self._other_language.pop()
            self._skipping -= 1

    def handle_data(self, data):
        if not self._skipping and data.strip():
            self.parts.append(data.strip())


def visible(html: str) -> list[str]:
    parser = VisibleText()
    parser.feed(html)
    return parser.parts


@pytest.fixture
def populated(rows):
    extension = rows.extension("1002", name="Reception")
    rows.extension("1003", name="Kitchen")
    rows.binding(extension)
    rows.attempt("1002")
    # a phone that cannot answer SHA-256: the page's diagnosis (app/extensions/diagnosis.py)
    accounts.set_digest_algorithms("1002", "SHA-256,MD5")
    rows.attempt("1002", result="challenge", reason="never answered the challenge",
                 source_host="198.51.100.20", user_agent="baresip v1.0.0 (x86_64/Linux)", times=2)
    rows.call("1002", "1003")
    rows.call("1002", "1003", live=True)
    # A group, forwards and DND, and calls through them: every routing word on the pages.
    create_group("600", "Sales", ["1003", "1002"], strategy="hunt", fallback="hangup")
    set_forward("1002", "busy", "600")
    set_forward("1002", "no_answer", "1003", after=25)
    set_dnd("1002", True)
    call = rows.call("1002", "1003", via_group="600", answered_by="1002")
    CallEvent.create(call=call.id, at=time.time(), kind="forwarded", by="1003", target="600",
                     detail="busy")
    rows.call("1002", "600", live=True, state="ringing", answered_at=None, via_group="600",
              ringing="1003,1002")
    return extension


def choose(client, language):
    return client.post("/account/language", data={"language": language})


def page(client, path) -> str:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response.get_data(as_text=True)


@pytest.mark.parametrize("language", ["uz", "ru"])
def test_every_page_answers_in_each_language(admin_client, populated, language):
    assert choose(admin_client, language).status_code == 302
    for path in PAGES:
        assert f'<html lang="{language}">' in page(admin_client, path), path


@pytest.mark.parametrize("language", ["uz", "ru"])
def test_translated_pages_show_no_english(admin_client, populated, language):
    catalog = catalogues.load(language)
    english = {m.id for m in catalogues.extract()
               if isinstance(m.id, str) and " " in m.id and "%" not in m.id
               and catalog[m.id].string != m.id}
    choose(admin_client, language)
    for path in TRANSLATED:
        texts = visible(page(admin_client, path))
        # A file's path (the database's, on the dashboard) is data, whatever its words.
        left = [t for t in texts if t in english or ENGLISH.search(re.sub(r"\S*/\S*", "", t))]
        assert left == [], (path, left)


def test_known_strings_appear_translated(admin_client, populated):
    choose(admin_client, "ru")
    assert "Внутренние номера" in page(admin_client, "/extensions/")
    assert "Зарегистрирован" in page(admin_client, "/extensions/")
    assert "Текущие вызовы" in page(admin_client, "/")
    assert "Последние попытки аутентификации" in page(admin_client, "/extensions/1002")
    assert "неверный пароль" in page(admin_client, "/security/failures")  # sipd's reason
    choose(admin_client, "uz")
    assert "Ichki raqamlar" in page(admin_client, "/extensions/")
    assert "Qoʻngʻiroqlar tarixi" in page(admin_client, "/")
    assert "2 ta ichki raqam" in page(admin_client, "/extensions/")


def test_the_choice_is_kept_on_the_account_for_every_browser(app, admin_client, auth, populated):
    response = choose(admin_client, "ru")
    assert response.headers["Location"] == "/account"
    assert "Язык панели сохранён." in page(admin_client, "/account")
    assert Admin.get(Admin.username == ADMIN[0]).language == "ru"
    auth.logout()
    assert "Log in" in page(admin_client, "/login")   # logged out: the browser decides
    other_browser = app.test_client()
    other_browser.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]})
    assert "Внутренние номера" in page(other_browser, "/extensions/")
    # Another admin's panel stays in the language of their own browser.
    viewer = app.test_client()
    viewer.post("/login", data={"username": VIEWER[0], "password": VIEWER[1]})
    assert '<html lang="en">' in page(viewer, "/extensions/")


def test_a_viewer_may_choose_their_language(client, auth):
    auth.login_viewer()
    assert choose(client, "uz").status_code == 302
    assert Admin.get(Admin.username == VIEWER[0]).language == "uz"


def test_an_unknown_language_is_refused_with_a_form_error(admin_client):
    response = choose(admin_client, "de")
    assert response.status_code == 400
    assert "Not a valid choice." in response.get_data(as_text=True)
    assert Admin.get(Admin.username == ADMIN[0]).language == ""


@pytest.mark.parametrize(("header", "language", "button"), [
    (None, "en", "Log in"),
    ("uz-UZ,uz;q=0.9,ru;q=0.8", "uz", "Kirish"),
    ("ru-RU,ru;q=0.9,en-US;q=0.8", "ru", "Войти"),
    ("de-DE,de;q=0.9", "en", "Log in"),
    ("de;q=0.9,ru;q=0.5", "ru", "Войти"),
])
def test_the_browser_language_decides_until_an_admin_chooses(client, header, language, button):
    headers = {"Accept-Language": header} if header else {}
    html = client.get("/login", headers=headers).get_data(as_text=True)
    assert f'<html lang="{language}">' in html
    assert f'value="{button}"' in html


def test_the_admins_choice_beats_the_browser(admin_client):
    choose(admin_client, "uz")
    html = admin_client.get("/extensions/", headers={"Accept-Language": "ru"}).get_data(
        as_text=True)
    assert "Ichki raqamlar" in html


def test_form_errors_are_translated(client, admin_client, populated):
    html = client.post("/login", data={"username": "", "password": "x"},
                       headers={"Accept-Language": "uz"}).get_data(as_text=True)
    assert "Bu maydonni toʻldiring." in html
    choose(admin_client, "ru")
    response = admin_client.post("/extensions/new", data={
        "number": "1002", "mode": "set", "password": "aaaaaaaaaa", "confirm": "bbb"})
    html = response.get_data(as_text=True)
    assert "Внутренний номер 1002 уже существует." in html
    assert "Задать этот пароль:" in html


def test_a_wrong_login_is_said_in_the_browsers_language(client):
    html = client.post("/login", data={"username": "admin", "password": "wrong-one-entirely"},
                       headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert "Неверное имя пользователя или пароль." in html


def test_the_phone_settings_in_russian_keep_microsips_field_names(admin_client):
    choose(admin_client, "ru")
    response = admin_client.post("/extensions/new", data={
        "number": "1004", "name": "Склад", "enabled": "y", "mode": "generate"})
    html = response.get_data(as_text=True)
    assert "Внутренний номер 1004 создан" in html
    for label in ["SIP-сервер", "Домен", "Имя пользователя (Username)",
                  "Имя для авторизации (Login)", "Отображаемое имя", "Скачать microsip.ini"]:
        assert f"{label}" in html, label
    assert 'aria-label="Копировать: SIP-сервер"' in html


@pytest.fixture
def tashkent(monkeypatch):
    """The office's zone, UTC+5 all year, for this process (time.localtime reads TZ)."""
    monkeypatch.setenv("TZ", "Asia/Tashkent")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_times_are_shown_in_the_servers_zone_with_the_zone_named(admin_client, rows, tashkent):
    extension = rows.extension("1002")
    moment = 1_780_000_000  # 2026-05-28 20:26:40 UTC
    rows.binding(extension, registered_at=moment)
    html = page(admin_client, "/extensions/1002")
    assert "2026-05-29 01:26:40 UTC+05" in html
    assert 'title="2026-05-28 20:26:40 UTC"' in html


@pytest.mark.parametrize("language", ["uz", "ru"])
def test_the_page_shown_once_with_the_phone_settings_has_no_english(admin_client, language):
    choose(admin_client, language)
    response = admin_client.post("/extensions/new", data={
        "number": "1005", "enabled": "y", "mode": "generate"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<code>%APPDATA%\\MicroSIP\\</code>" in html
    texts = visible(html)
    left = [t for t in texts if ENGLISH.search(re.sub(r"\S*/\S*", "", t))]
    assert left == []
    # Notes and warnings come from core in English and are shown translated.
    assert any(t.startswith(("sipd hali", "sipd ещё")) for t in texts), texts


def test_the_live_calls_script_gets_its_words_in_the_admins_language(admin_client, rows):
    rows.call("1002", "1003", live=True)
    choose(admin_client, "ru")
    html = page(admin_client, "/calls/active")
    texts = json.loads(unescape(re.search(r"data-texts='([^']*)'", html).group(1)))
    assert texts["Hang up"] == "Завершить" and texts["talking"] == "разговор"
    assert texts["The panel does not answer (%(error)s); still trying."] == (
        "Панель не отвечает (%(error)s); продолжаю попытки.")
    assert admin_client.get("/calls/active.json").get_json()["summary"] == "1 текущий вызов"


def test_the_password_rules_of_core_are_said_in_the_admins_language(admin_client):
    choose(admin_client, "ru")
    html = admin_client.post("/extensions/new", data={
        "number": "1006", "mode": "set", "password": "password123", "confirm": "password123"},
    ).get_data(as_text=True)
    assert "Пароль входит в число самых распространённых паролей" in html
    choose(admin_client, "uz")
    html = admin_client.post("/extensions/new", data={
        "number": "1006", "mode": "set", "password": "abc1006defgh", "confirm": "abc1006defgh"},
    ).get_data(as_text=True)
    assert "Parol tarkibida ichki raqam boʻlmasligi kerak (1006)." in html
    html = admin_client.post("/extensions/new", data={"number": "1x", "mode": "generate"}
                             ).get_data(as_text=True)
    assert "&#39;1x&#39; ichki raqami 2 dan 15 gacha raqamdan iborat boʻlishi kerak." in html

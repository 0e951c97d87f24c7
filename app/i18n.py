"""The panel's languages: English, Uzbek (Latin script) and Russian, with Flask-Babel.

An admin's choice is kept on their account (Admin.language, chosen on /account);
until they choose, and on the login page, the browser's Accept-Language decides,
English when it names none of the three. Catalogues live in app/translations
(messages.po and the compiled messages.mo beside it, both committed;
tests/unit/test_catalogues.py checks that every marked message is translated
and that each .mo says what its .po says). To add messages: mark them, then
`python tools/catalogues.py update`, translate, `python tools/catalogues.py compile`.
"""

from __future__ import annotations

import time

from flask import request
from flask_babel import Babel, get_locale, get_translations
from flask_login import current_user

# Code -> the language's own name, as the selector shows it.
LANGUAGES = {"en": "English", "uz": "Oʻzbekcha", "ru": "Русский"}
DEFAULT = "en"

babel = Babel()


def select_locale() -> str:
    chosen = getattr(current_user, "language", None) if current_user else None
    if chosen in LANGUAGES:
        return chosen
    return browser_language()


def browser_language() -> str:
    # best_match also takes "ru-RU" for "ru" and "uz-Latn-UZ" for "uz".
    return request.accept_languages.best_match(LANGUAGES, default=DEFAULT)


def local_strftime(pattern: str, moment: time.struct_time) -> str:
    """time.strftime with %a and %b in the admin's language (the C locale gives English)."""
    locale = get_locale()
    if locale is not None and locale.language != "en":
        day = locale.days["format"]["abbreviated"][moment.tm_wday]  # 0 is Monday in both
        month = locale.months["format"]["abbreviated"][moment.tm_mon]
        pattern = pattern.replace("%a", day.replace("%", "%%")).replace(
            "%b", month.replace("%", "%%"))
    return time.strftime(pattern, moment)


def N_(message: str) -> str:  # noqa: N802 - Babel's marker for "extract, translate later"
    return message


def Nn_(singular: str, plural: str) -> tuple[str, str]:  # noqa: N802
    return singular, plural


# WTForms' own messages that the panel's forms can show. They are translated in
# this catalogue rather than WTForms' (which has no Uzbek), so that one test
# covers every message a page can show; marked here for extraction.
WTFORMS_MESSAGES = (
    N_("This field is required."),
    N_("Not a valid choice."),
    N_("Not a valid integer value."),
    N_("Not a valid date value."),
    N_("Not a valid time value."),
    N_("Number must be at least %(min)s."),
    N_("Number must be at most %(max)s."),
    N_("Number must be between %(min)s and %(max)s."),
    N_("Field must be between %(min)d and %(max)d characters long."),
)
WTFORMS_PLURALS = (
    Nn_("Field cannot be longer than %(max)d character.",
        "Field cannot be longer than %(max)d characters."),
    Nn_("Field must be at least %(min)d character long.",
        "Field must be at least %(min)d characters long."),
)


# sipd's words for why an authentication failed (sipd/sip/digest.py Verdict,
# sipd/registrar.py), kept in English in the database and shown translated where
# one is exactly these (app/filters.py `translated`); others show as recorded.
SIP_REASONS = (
    N_("wrong password"), N_("stale nonce"), N_("nonce not issued by this server"),
    N_("nonce was issued to another address"), N_("nonce count reused"),
    N_("unsupported digest algorithm"), N_("client did not use qop=auth"),
    N_("incomplete credentials"), N_("nc must be 8 hex digits from 00000001"),
    N_("unknown extension"), N_("extension disabled"),
    N_("nonce was issued before sipd was upgraded"),
    N_("digest uri does not match the Request-URI"),
    N_("never answered the challenge"),  # sipd/unanswered.py: result "challenge"
)


class _FormMessages:
    """What Flask-WTF asks for WTForms' messages, answered from this panel's catalogue
    in the language of the moment (asked when a message is shown, not at the request's start)."""

    def ugettext(self, string: str) -> str:
        return get_translations().ugettext(string)

    def ungettext(self, singular: str, plural: str, n: int) -> str:
        return get_translations().ungettext(singular, plural, n)


def _form_messages() -> None:
    # flask_wtf.i18n looks for this attribute before loading WTForms' catalogue.
    request.wtforms_translations = _FormMessages()


def init_app(app) -> None:
    babel.init_app(app, locale_selector=select_locale, default_domain="messages")
    # {% trans %} blocks look up their text with newlines and indentation folded,
    # as tools/catalogues.py extracts it.
    app.jinja_env.policies["ext.i18n.trimmed"] = True
    app.before_request(_form_messages)
    app.add_template_global(LANGUAGES, "languages")
    app.add_template_global(lambda: str(get_locale()), "get_locale")

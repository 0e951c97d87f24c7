"""The panel's message catalogues: extract, update, compile, check (see app/i18n.py).

    python tools/catalogues.py update    # new messages into every messages.po, untranslated
    python tools/catalogues.py compile   # messages.po -> messages.mo, committed beside it
    python tools/catalogues.py check     # exit 1 naming what is untranslated, fuzzy or stale

The same functions back tests/unit/test_catalogues.py.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir, extract_from_file
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
TRANSLATIONS = APP / "translations"
TRANSLATED = ("uz", "ru")  # English is the source language: its msgids are the text
# Flask-Babel's and the panel's own markers; Nn_ marks a WTForms plural (app/i18n.py).
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None,
            "_l": None, "N_": None, "Nn_": (1, 2)}
# Outside app/: the texts of core that the panel shows, marked there with N_.
CORE_FILES = [ROOT / "core" / name for name in (
    "audit.py", "phone_settings.py", "accounts.py", "credentials.py", "weak_passwords.py",
    "destinations.py", "groups.py", "forwarding.py", "trunks.py", "outbound.py",
    "voicemail.py", "ivr.py", "hours.py",
    # The dial-pattern parser's errors are the panel's form errors on outbound routes.
    "dial_patterns.py")]
METHODS = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
OPTIONS = {"**/templates/**.html": {"extensions": "jinja2.ext.do", "trimmed": "true"}}


def extract() -> Catalog:
    """Every message marked in app/, templates and Python."""
    catalog = Catalog(project="pbx-panel")
    for filename, lineno, message, comments, context in extract_from_dir(
        APP, METHODS, OPTIONS, KEYWORDS, strip_comment_tags=True
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    for path in CORE_FILES:
        for lineno, message, comments, context in extract_from_file(
            "python", path, KEYWORDS, strip_comment_tags=True
        ):
            catalog.add(message, None, [(str(path.relative_to(ROOT)), lineno)],
                        auto_comments=comments, context=context)
    return catalog


def po_path(language: str, translations: Path = TRANSLATIONS) -> Path:
    return translations / language / "LC_MESSAGES" / "messages.po"


def load(language: str, translations: Path = TRANSLATIONS) -> Catalog:
    with po_path(language, translations).open("rb") as f:
        return read_po(f, locale=language)


def save(catalog: Catalog, language: str, translations: Path = TRANSLATIONS) -> None:
    path = po_path(language, translations)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    write_po(buffer, catalog, width=100, omit_header=False, ignore_obsolete=True)
    path.write_bytes(buffer.getvalue())


def update() -> None:
    template = extract()
    for language in TRANSLATED:
        catalog = (load(language) if po_path(language).exists()
                   else Catalog(locale=language, project="pbx-panel", fuzzy=False))
        catalog.update(template, no_fuzzy_matching=True)
        save(catalog, language)


def compiled(catalog: Catalog) -> bytes:
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    return buffer.getvalue()


def compile_all() -> None:
    for language in TRANSLATED:
        po_path(language).with_suffix(".mo").write_bytes(compiled(load(language)))


def problems(language: str, translations: Path = TRANSLATIONS) -> list[str]:
    """What a reader of `language` would see in English, a translation whose %(name)s
    placeholders differ from the English (it would fail when shown), or a .mo out of
    step with its .po (the panel reads the .mo)."""
    catalog = load(language, translations)
    found = [f"{language}: {message.id!r}: {error}"
             for message, errors in catalog.check() for error in errors]
    for message in extract():
        if not message.id:
            continue
        entry = catalog.get(message.id, message.context)
        key = message.id if isinstance(message.id, str) else message.id[0]
        if entry is None:
            found.append(f"{language}: not in messages.po: {key!r}")
        elif entry.fuzzy:
            found.append(f"{language}: fuzzy: {key!r}")
        elif not all(_text(entry.string)):
            found.append(f"{language}: untranslated: {key!r}")
    with po_path(language, translations).with_suffix(".mo").open("rb") as f:
        mo = read_mo(f)
    for entry in catalog:
        if not entry.id or not entry.string:
            continue
        in_mo = mo.get(entry.id, entry.context)
        if in_mo is None:
            found.append(f"{language}: messages.mo lacks {entry.id!r}: run compile")
        elif _text(in_mo.string) != _text(entry.string):
            found.append(f"{language}: messages.mo differs on {entry.id!r}: run compile")
    return found


def _text(string) -> tuple[str, ...]:
    """A translation as a tuple: read_mo gives a plural's forms as a list, read_po a tuple."""
    return (string,) if isinstance(string, str) else tuple(string)


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "check"
    if command == "update":
        update()
    elif command == "compile":
        compile_all()
    elif command == "check":
        found = [line for language in TRANSLATED for line in problems(language)]
        for line in found:
            print(line, file=sys.stderr)
        return 1 if found else 0
    else:
        print(f"usage: {argv[0]} update|compile|check", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

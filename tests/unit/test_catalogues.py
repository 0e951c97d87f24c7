"""The panel's message catalogues: every marked message translated into Uzbek and
Russian, none fuzzy, placeholders kept, and the committed .mo (what the panel reads)
saying what its .po says (tools/catalogues.py holds the checks)."""

from __future__ import annotations

import shutil

import pytest
from babel.messages.mofile import write_mo

from tools import catalogues


@pytest.mark.parametrize("language", ["uz", "ru"])
def test_every_message_of_the_panel_is_translated_and_compiled(language):
    assert catalogues.problems(language) == []


def test_extraction_finds_the_messages_of_templates_python_and_wtforms():
    found = {m.id if isinstance(m.id, str) else m.id[0] for m in catalogues.extract()}
    assert "Live calls" in found                       # base.html's menu
    assert "Wrong user name or password." in found     # a route's form error
    assert "Generate a strong password" in found       # a lazy form label
    assert "This field is required." in found         # WTForms' own, marked in app/i18n.py
    assert "%(num)s extension" in found                # a plural in a template
    assert len(found) > 150


@pytest.fixture
def translations(tmp_path):
    copy = tmp_path / "translations"
    shutil.copytree(catalogues.TRANSLATIONS, copy)
    return copy


def test_a_stale_mo_is_found(translations):
    catalog = catalogues.load("ru", translations)
    catalog["Live calls"].string = "Живые звонки"   # the .po changed, the .mo not compiled
    with catalogues.po_path("ru", translations).with_suffix(".mo").open("wb") as f:
        write_mo(f, catalogues.load("ru", translations))
    catalogues.save(catalog, "ru", translations)
    assert catalogues.problems("ru", translations) == [
        "ru: messages.mo differs on 'Live calls': run compile"]


def test_untranslated_fuzzy_and_broken_placeholders_are_found(translations):
    catalog = catalogues.load("uz", translations)
    catalog["Bans"].string = ""
    catalog["Refresh"].flags.add("fuzzy")
    catalog["Extension %(number)s saved."].string = "%(nomer)s saqlandi."
    catalogues.save(catalog, "uz", translations)
    with catalogues.po_path("uz", translations).with_suffix(".mo").open("wb") as f:
        write_mo(f, catalog, use_fuzzy=True)
    found = catalogues.problems("uz", translations)
    assert "uz: untranslated: 'Bans'" in found
    assert "uz: fuzzy: 'Refresh'" in found
    assert any("Extension %(number)s saved." in line and "nomer" in line for line in found), found

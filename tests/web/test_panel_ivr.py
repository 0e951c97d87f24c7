"""IVR menus in the panel: the list, create with an uploaded recording (any common WAV
encoding converted by core/sounds.py to 8 kHz µ-law, anything else refused), keys as
KEY → destination rows checked like every destination, edit, and delete refused while
something leads to the menu, as `pbxctl ivr rm` refuses it; each change audited; what
the panel saved is what `pbxctl ivr list` and core/ivr.py see; viewers only look.

A real temporary database and sounds directory per test; recordings are made by
sox, which converts them too (a missing sox is a failure).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html import unescape
from io import BytesIO

import pytest
from panel_testing import REALM, ROOT, make_app

from core import ivr
from core.models import AuditEntry, InboundRoute, Ivr, db

KEYS = "0123456789*#"


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path, SOUNDS_DIR=str(tmp_path / "sounds"))
    yield app
    if not db.is_closed():
        db.close()


@pytest.fixture
def office(rows):
    rows.extension("1001", name="Alice")
    rows.extension("1002", name="Bob")


def wav(tmp_path, spec="-r 44100 -c 2 -b 16 -e signed-integer", seconds="0.5") -> bytes:
    """A WAV file as sox writes it with `spec` (rate, channels, encoding)."""
    path = tmp_path / "made.wav"
    subprocess.run(
        ["sox", "-n", *spec.split(), "-t", "wav", str(path), "synth", seconds, "sine", "440"],
        check=True,
        capture_output=True,
    )
    return path.read_bytes()


def soxi(path) -> dict[str, str]:
    out = subprocess.run(
        ["sox", "--info", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return {
        k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if v
    }


def menu_form(
    prompt: bytes | None = None, filename="welcome.wav", name="main", keys=None, **fields
):
    data = {
        "name": name,
        "number": "",
        "timeout": "5",
        "repeats": "2",
        "on_timeout": "",
        "on_invalid": "",
        "language": "en",
    }
    for index, key in enumerate(KEYS):
        data[f"keys-{index}-destination"] = (keys or {}).get(key, "")
    if prompt is not None:
        data["prompt"] = (BytesIO(prompt), filename)
    data.update(fields)
    return data


def post(client, url, data):
    return client.post(url, data=data, content_type="multipart/form-data")


def errors(page: str) -> list[str]:
    found = re.findall(
        r'<p class="error">([^<]*)</p>|<div class="flash error" role="alert">'
        r"([^<]*)</div>",
        page,
    )
    return [unescape(re.sub(r"\s+", " ", a or b)).strip() for a, b in found]


def audit_rows(action):
    return [
        (e.actor, e.target, e.detail)
        for e in AuditEntry.select().where(AuditEntry.action == action).order_by(AuditEntry.id)
    ]


def create(client, tmp_path, **fields):
    fields.setdefault("keys", {"1": "1001", "2": "voicemail:1002"})
    return post(client, "/ivr/new", menu_form(wav(tmp_path), **fields))


# The list


def test_list_empty_and_the_menu_names_it(admin_client):
    page = admin_client.get("/ivr/").data.decode()
    assert "No IVR menus yet." in page
    assert '<a href="/ivr/" aria-current="page">IVR & hours</a>' in page
    assert 'href="/ivr/new"' in page and 'href="/hours/"' in page


def test_a_menu_made_in_the_panel_is_listed_with_everything(admin_client, office, tmp_path):
    response = create(
        admin_client,
        tmp_path,
        keys={"1": "1001", "2": "voicemail:1002", "#": "hangup"},
        number="700",
        timeout="7",
        repeats="1",
        on_timeout="1002",
        on_invalid="ivr:main",
        direct_dial="y",
    )
    assert response.status_code == 302 and response.headers["Location"] == "/ivr/"
    page = admin_client.get("/ivr/").data.decode()
    assert "IVR menu main created: calls reach it as ivr:main." in page
    row = page[page.index('id="ivr-main"') : page.index("</tr>", page.index('id="ivr-main"'))]
    assert '<td data-label="Number" class="number">700</td>' in row
    keys = re.findall(r'<li data-key="(.)">(.*?)</li>', row)
    assert [k for k, _ in keys] == ["1", "2", "#"]
    assert "1001" in keys[0][1] and "Alice" in keys[0][1]
    assert "voicemail:1002" in keys[1][1] and "hang up" in keys[2][1]
    assert "7 s, said 2 times" in row
    assert "1002" in row[row.index('class="on-timeout"') :] and "ivr:main" in row
    assert '<td data-label="Direct dial" class="direct-dial">yes</td>' in row
    assert 'src="/ivr/main/prompt.wav"' in row


# Create: what core/ivr.py and pbxctl then see


def test_created_menu_is_what_core_and_pbxctl_see(admin_client, office, tmp_path, app):
    create(
        admin_client,
        tmp_path,
        keys={"1": "1001", "*": "voicemail:1002"},
        number="700",
        on_timeout="1001",
        language="uz",
    )
    menu = ivr.get_ivr("main")
    assert ivr.options_of(menu) == {"1": "1001", "*": "voicemail:1002"}
    assert (
        menu.number,
        menu.timeout,
        menu.repeats,
        menu.on_timeout,
        menu.on_invalid,
        menu.language,
        menu.direct_dial,
    ) == ("700", 5, 2, "1001", "", "uz", False)
    assert audit_rows("ivr.create") == [("admin", "main", ivr.describe_ivr(menu))]
    db.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBX_")}
    env.update(
        PBX_DB=str(tmp_path / "pbx.db"),
        PBX_REALM=REALM,
        PBX_PYTHON=sys.executable,
        PBX_SOUNDS_DIR=str(tmp_path / "sounds"),
    )
    listed = subprocess.run(
        [str(ROOT / "pbxctl"), "ivr", "list"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("main"))
    assert row.split() == [
        "main",
        "700",
        "uz",
        "1=1001",
        "*=voicemail:1002",
        "5",
        "s",
        "x3",
        "1001",
        "goodbye",
        "no",
    ], listed.stdout


@pytest.mark.parametrize(
    "spec",
    [
        "-r 44100 -c 2 -b 16 -e signed-integer",  # CD quality, stereo
        "-r 11025 -c 1 -b 8 -e unsigned-integer",  # old 8-bit
        "-r 48000 -c 1 -b 32 -e floating-point",  # a DAW's export
        "-r 16000 -c 1 -b 24 -e signed-integer",
        "-r 8000 -c 1 -e a-law",
        "-r 8000 -c 1 -e ima-adpcm",
        "-r 22050 -c 1 -e ms-adpcm",
    ],
)
def test_any_common_wav_becomes_8khz_mono_mu_law(admin_client, office, tmp_path, spec, app):
    response = post(admin_client, "/ivr/new", menu_form(wav(tmp_path, spec), keys={"1": "1001"}))
    assert response.status_code == 302, errors(response.data.decode())
    stored = tmp_path / "sounds" / "ivr" / "main.wav"
    assert ivr.prompt_file(ivr.get_ivr("main"), app.config["PBX_SETTINGS"]) == stored
    info = soxi(stored)
    assert (info["Channels"], info["Sample Rate"]) == ("1", "8000")
    assert "u-law" in info["Sample Encoding"]
    served = admin_client.get("/ivr/main/prompt.wav")
    assert served.status_code == 200 and served.mimetype == "audio/wav"
    assert served.data == stored.read_bytes()


@pytest.mark.parametrize(
    "data, filename",
    [
        (b"hello, this is not audio\n" * 40, "welcome.wav"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "cut-short.wav"),  # a WAV header cut off
        (b"", "empty.wav"),
    ],
)
def test_a_file_that_is_not_audio_is_a_form_error_and_nothing_is_saved(
    admin_client, office, tmp_path, data, filename
):
    page = post(
        admin_client, "/ivr/new", menu_form(data, filename=filename, keys={"1": "1001"})
    ).data.decode()
    found = errors(page)
    assert len(found) == 1 and found[0].startswith("The menu prompt is refused: "), found
    assert filename in found[0]
    assert Ivr.select().count() == 0
    assert not (tmp_path / "sounds" / "ivr").exists() or not any(
        (tmp_path / "sounds" / "ivr").iterdir()
    )


def test_a_menu_needs_a_recording(admin_client, office):
    page = post(admin_client, "/ivr/new", menu_form(None, keys={"1": "1001"})).data.decode()
    assert errors(page) == ["Choose the menu's recording, a WAV file."]
    assert Ivr.select().count() == 0


@pytest.mark.parametrize(
    "fields, expected",
    [
        (
            {"keys": {"1": "1009"}},
            "1009 is no extension or ring group, and no outbound route takes it.",
        ),
        ({"keys": {"1": "sales"}}, "is not a destination"),
        ({"keys": {"3": "voicemail:1009"}}, "Extension 1009 has no mailbox."),
        ({"keys": {"1": "1001"}, "on_timeout": "ivr:nope"}, "There is no IVR menu nope."),
        ({"keys": {"1": "1001"}, "on_invalid": "hours:nope"}, "There are no business hours nope."),
        ({"keys": {"1": "1001"}, "number": "1001"}, "1001 is an extension."),
        ({"keys": {"1": "1001"}, "name": "Main Menu"}, "A name is 1 to 32 letters"),
        ({"keys": {"1": "1001"}, "timeout": "0"}, "The menu timeout must be 1 to 60 seconds"),
        ({"keys": {}}, "A menu needs at least one option (KEY=DESTINATION)."),
    ],
)
def test_bad_input_is_a_form_error_and_nothing_is_saved(
    admin_client, office, tmp_path, fields, expected
):
    page = create(admin_client, tmp_path, **fields).data.decode()
    assert any(expected in error for error in errors(page)), errors(page)
    assert Ivr.select().count() == 0
    assert not (tmp_path / "sounds" / "ivr" / "main.wav").exists()


def test_errors_are_in_the_admins_language(admin_client, office, tmp_path):
    admin_client.post("/account/language", data={"language": "ru"})
    page = create(admin_client, tmp_path, keys={"1": "1009"}).data.decode()
    assert errors(page) == [
        "1009 — не внутренний номер и не группа вызова, и ни один исходящий маршрут его не принимает."
    ]


# Edit


def test_edit_changes_keys_and_keeps_the_recording(admin_client, office, tmp_path):
    create(admin_client, tmp_path)
    stored = tmp_path / "sounds" / "ivr" / "main.wav"
    before = stored.read_bytes()
    page = admin_client.get("/ivr/main/edit").data.decode()
    assert 'value="voicemail:1002"' in page and 'name="name"' not in page
    response = post(
        admin_client,
        "/ivr/main/edit",
        menu_form(None, keys={"0": "ivr:main", "5": "1002"}, on_invalid="1001", timeout="9"),
    )
    assert response.status_code == 302, errors(response.data.decode())
    menu = ivr.get_ivr("main")
    assert ivr.options_of(menu) == {"0": "ivr:main", "5": "1002"}
    assert (menu.on_invalid, menu.timeout) == ("1001", 9)
    assert stored.read_bytes() == before
    (detail,) = [d for _, _, d in audit_rows("ivr.edit")]
    assert "keys 1=1001, 2=voicemail:1002" in detail and "keys 0=ivr:main, 5=1002" in detail


def test_edit_with_a_new_recording_replaces_it(admin_client, office, tmp_path):
    create(admin_client, tmp_path)
    stored = tmp_path / "sounds" / "ivr" / "main.wav"
    before = stored.read_bytes()
    response = post(
        admin_client, "/ivr/main/edit", menu_form(wav(tmp_path, seconds="1.5"), keys={"1": "1001"})
    )
    assert response.status_code == 302
    assert stored.read_bytes() != before
    assert float(soxi(stored)["Duration"].split()[0].split(":")[-1]) == pytest.approx(1.5)


def test_a_bad_edit_changes_nothing(admin_client, office, tmp_path):
    create(admin_client, tmp_path)
    stored = tmp_path / "sounds" / "ivr" / "main.wav"
    before = stored.read_bytes()
    page = post(
        admin_client, "/ivr/main/edit", menu_form(b"not audio", keys={"1": "1002"})
    ).data.decode()
    assert any(e.startswith("The menu prompt is refused") for e in errors(page)), errors(page)
    page = post(
        admin_client, "/ivr/main/edit", menu_form(None, keys={"1": "1002", "2": "nobody"})
    ).data.decode()
    assert any("is not a destination" in e for e in errors(page)), errors(page)
    assert ivr.options_of(ivr.get_ivr("main")) == {"1": "1001", "2": "voicemail:1002"}
    assert stored.read_bytes() == before
    assert audit_rows("ivr.edit") == []


# Delete


def test_delete_removes_the_menu_and_its_recording(admin_client, office, tmp_path):
    create(admin_client, tmp_path)
    page = admin_client.get("/ivr/main/delete").data.decode()
    assert "Delete IVR menu main?" in page and 'id="confirm-delete"' in page
    response = admin_client.post("/ivr/main/delete")
    assert response.status_code == 302
    assert Ivr.select().count() == 0
    assert not (tmp_path / "sounds" / "ivr" / "main.wav").exists()
    assert [t for _, t, _ in audit_rows("ivr.delete")] == ["main"]
    assert "IVR menu main deleted." in admin_client.get("/ivr/").data.decode()


def test_delete_is_refused_while_something_leads_to_the_menu(admin_client, office, tmp_path):
    create(admin_client, tmp_path)
    InboundRoute.create(did="712000000", destination="ivr:main")
    page = admin_client.get("/ivr/main/delete").data.decode()
    assert 'id="in-use"' in page and 'id="confirm-delete"' not in page
    assert "inbound route of DID 712000000" in page
    page = admin_client.post("/ivr/main/delete", follow_redirects=True).data.decode()
    assert (
        "IVR menu main is in use (inbound route of DID 712000000): point those elsewhere first."
    ) in unescape(page)
    assert Ivr.select().count() == 1 and (tmp_path / "sounds" / "ivr" / "main.wav").exists()
    assert audit_rows("ivr.delete") == []


# Who may


def test_viewers_see_the_list_but_cannot_change(client, auth, office, tmp_path):
    auth.login()
    create(client, tmp_path)
    auth.logout()
    auth.login_viewer()
    page = client.get("/ivr/").data.decode()
    assert 'id="ivr-main"' in page and "/ivr/new" not in page and "/ivr/main/edit" not in page
    assert client.get("/ivr/new").status_code == 403
    assert client.get("/ivr/main/edit").status_code == 403
    assert client.post("/ivr/main/delete").status_code == 403
    assert client.get("/ivr/main/prompt.wav").status_code == 200


def test_unknown_menu_is_404(admin_client):
    assert admin_client.get("/ivr/nope/edit").status_code == 404
    assert admin_client.get("/ivr/nope/prompt.wav").status_code == 404


def test_a_recording_larger_than_the_form_takes_is_the_forms_error(admin_client, office, tmp_path):
    too_large = "The file is larger than 32 MB, the most this form takes."
    big = b"\0" * (33 * 1024 * 1024)
    response = post(admin_client, "/ivr/new", menu_form(big, keys={"1": "1001"}))
    assert response.status_code == 413
    page = response.data.decode()
    assert errors(page) == [too_large] and 'name="prompt"' in page
    assert ivr.list_ivrs() == [] and audit_rows("ivr.create") == []
    # Editing: the menu's page as it is stored, the recording's error on it, nothing changed.
    create(admin_client, tmp_path)
    stored = (tmp_path / "sounds" / "ivr" / "main.wav").read_bytes()
    response = post(admin_client, "/ivr/main/edit", menu_form(big, keys={"1": "1002"}))
    assert response.status_code == 413
    page = response.data.decode()
    assert errors(page) == [too_large] and 'value="voicemail:1002"' in page
    assert ivr.options_of(ivr.get_ivr("main")) == {"1": "1001", "2": "voicemail:1002"}
    assert (tmp_path / "sounds" / "ivr" / "main.wav").read_bytes() == stored
    assert audit_rows("ivr.edit") == []
    # Other pages keep the small limit, and the panel's 413 page.
    response = admin_client.post("/groups/new", data={"name": "x" * (2 * 1024 * 1024)})
    assert response.status_code == 413
    assert "larger than this page takes" in response.data.decode()


# Destinations: every form core/destinations.py takes, and its error naming them all


def test_a_key_to_an_outside_number_needs_an_outbound_route_to_take_it(
    admin_client, office, tmp_path
):
    from core import outbound, trunks

    page = create(admin_client, tmp_path, keys={"9": "998901112233"}).data.decode()
    assert errors(page) == [
        "998901112233 is no extension or ring group, and no outbound route takes it."
    ]
    trunks.create_trunk("acme", "sip.example.net", match="192.0.2.0/24")
    outbound.create_outbound("mobile", ["acme"], ["998XXXXXXXXX"])
    response = create(admin_client, tmp_path, keys={"9": "998901112233"})
    assert response.status_code == 302, errors(response.data.decode())
    assert ivr.options_of(ivr.get_ivr("main")) == {"9": "998901112233"}


@pytest.mark.parametrize(
    "language, expected",
    [
        (
            "en",
            "'sales' is not a destination: give an extension or ring group number, an"
            " outside number, voicemail:NUMBER, ivr:NAME, hours:NAME or hangup.",
        ),
        (
            "ru",
            "'sales' — не направление: укажите внутренний номер или номер группы,"
            " внешний номер, voicemail:НОМЕР, ivr:ИМЯ, hours:ИМЯ или hangup.",
        ),
        (
            "uz",
            "'sales' yoʻnalish emas: ichki raqam yoki guruh raqami, tashqi raqam,"
            " voicemail:RAQAM, ivr:NOM, hours:NOM yoki hangup kiriting.",
        ),
    ],
)
def test_a_text_that_is_no_destination_is_told_every_form(
    admin_client, office, tmp_path, language, expected
):
    admin_client.post("/account/language", data={"language": language})
    page = create(admin_client, tmp_path, keys={"1": "sales"}).data.decode()
    assert errors(page) == [expected]

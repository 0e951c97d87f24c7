"""The panel's sounds (app/sounds/): every prompt in every language with where it
comes from and a player, an upload replacing one (converted by sox, anything that
is not audio refused with the form's error and nothing replaced), going back to
the built one; each change in the audit log, admins only, behind CSRF."""

from __future__ import annotations

import io
import math
import struct
import wave
from pathlib import Path

import pytest
from panel_testing import ADMIN, csrf_token, make_app

from core import prompts, sounds
from core.models import AuditEntry

ULAW = 7  # WAVE_FORMAT_MULAW (RFC 2361)


def tone_wav(seconds=0.5, hz=440, rate=44100, channels=2) -> bytes:
    """A 16-bit PCM WAV as a recorder writes it (not the PBX's format)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(
            struct.pack("<h", int(12000 * math.sin(2 * math.pi * hz * n / rate))) * channels
            for n in range(int(rate * seconds))))
    return buffer.getvalue()


def wav_format(data: bytes) -> tuple[int, int, int]:
    """(format tag, channels, rate) of a WAV's fmt chunk."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    offset = 12
    while offset < len(data):
        chunk, size = data[offset:offset + 4], struct.unpack("<I", data[offset + 4:offset + 8])[0]
        if chunk == b"fmt ":
            return struct.unpack("<HHI", data[offset + 8:offset + 16])
        offset += 8 + size + (size & 1)
    raise AssertionError("no fmt chunk")


@pytest.fixture
def app(tmp_path, built_prompts):
    return make_app(tmp_path, PROMPTS_DIR=str(built_prompts), SOUNDS_DIR=str(tmp_path / "sounds"),
                    SOUNDS_PROMPT_MAX_BYTES=256 * 1024)


@pytest.fixture
def settings(app):
    return app.config["PBX_SETTINGS"]


def upload(client, name="goodbye", language="ru", data=None, filename="mine.wav", **extra):
    data = tone_wav() if data is None else data
    return client.post(f"/sounds/prompts/{language}/{name}",
                       data={"file": (io.BytesIO(data), filename), **extra},
                       content_type="multipart/form-data")


def audit_rows(action: str) -> list[AuditEntry]:
    return list(AuditEntry.select().where(AuditEntry.action == action))


def test_every_prompt_in_every_language_is_listed_with_its_origin(admin_client):
    html = admin_client.get("/sounds/prompts").get_data(as_text=True)
    for name in prompts.PROMPTS:
        assert f'id="prompt-{name.replace("/", "-")}"' in html, name
        for language in prompts.LANGUAGES:
            assert f'src="/sounds/prompts/{language}/{name}/audio"' in html, (name, language)
    cell = html.split('id="prompt-goodbye"')[1].split("</tr>")[0]
    origins = [part.split('"')[0] for part in cell.split('data-origin="')[1:]]
    assert origins == ["recorded", "synthesised", "synthesised"]  # en, uz, ru
    assert "Xayr." in cell and "До свидания." in cell
    beep = html.split('id="prompt-beep"')[1].split("</tr>")[0]
    assert beep.count('data-origin="recorded"') == 3  # a beep is Asterisk's in every language
    assert 'href="/sounds/prompts"' in admin_client.get("/").get_data(as_text=True)  # the nav


def test_a_prompt_plays_whole_and_in_ranges(admin_client, built_prompts):
    built = (built_prompts / "ru" / "goodbye.wav").read_bytes()
    response = admin_client.get("/sounds/prompts/ru/goodbye/audio")
    assert response.status_code == 200 and response.mimetype == "audio/wav"
    assert response.data == built and response.headers["Accept-Ranges"] == "bytes"
    part = admin_client.get("/sounds/prompts/ru/goodbye/audio", headers={"Range": "bytes=4-11"})
    assert part.status_code == 206 and part.data == built[4:12]
    assert part.headers["Content-Range"] == f"bytes 4-11/{len(built)}"
    digit = admin_client.get("/sounds/prompts/uz/digits/7/audio")
    assert digit.data == (built_prompts / "uz" / "digits" / "7.wav").read_bytes()
    for missing in ("/sounds/prompts/ru/nonsense/audio", "/sounds/prompts/de/goodbye/audio",
                    "/sounds/prompts/ru/../../etc/passwd/audio", "/sounds/prompts/de/goodbye"):
        assert admin_client.get(missing).status_code == 404, missing


def test_an_upload_replaces_one_prompt_in_one_language(admin_client, settings, built_prompts):
    response = upload(admin_client, data=tone_wav(seconds=1.0), filename="my goodbye.wav")
    assert response.status_code == 302
    assert response.headers["Location"] == "/sounds/prompts#prompt-goodbye"
    html = admin_client.get("/sounds/prompts").get_data(as_text=True)
    assert "The prompt goodbye (Russian) now plays your recording." in html
    cell = html.split('id="prompt-goodbye"')[1].split("</tr>")[0]
    assert [p.split('"')[0] for p in cell.split('data-origin="')[1:]] == [
        "recorded", "synthesised", "uploaded"]
    stored = settings.sounds_dir + "/ru/goodbye.wav"
    assert wav_format(open(stored, "rb").read()) == (ULAW, 1, 8000)
    assert sounds.duration(stored) == pytest.approx(1.0, abs=0.01)
    assert admin_client.get("/sounds/prompts/ru/goodbye/audio").data == open(stored, "rb").read()
    # the built one stays to be heard on the prompt's page, and to go back to
    built = admin_client.get("/sounds/prompts/ru/goodbye/audio?built=1")
    assert built.data == (built_prompts / "ru" / "goodbye.wav").read_bytes()
    page = admin_client.get("/sounds/prompts/ru/goodbye").get_data(as_text=True)
    assert 'src="/sounds/prompts/ru/goodbye/audio?built=1"' in page
    (entry,) = audit_rows("prompt.upload")
    assert (entry.actor, entry.target, entry.detail) == (ADMIN[0], "ru/goodbye", "my goodbye.wav")
    assert prompts.origin("goodbye", "uz", settings) == "synthesised"


def test_a_digit_prompt_takes_an_upload_too(admin_client, settings):
    assert upload(admin_client, "digits/3", "en").status_code == 302
    assert prompts.origin("digits/3", "en", settings) == "uploaded"
    assert prompts.origin("digits/4", "en", settings) == "recorded"


@pytest.mark.parametrize(("data", "filename", "message"), [
    (b"Dear admin,\nthis is a letter, not a recording.\n", "letter.txt",
     "This is not an audio file the PBX can read: upload a WAV, FLAC, OGG or MP3 file."),
    (b"this only pretends\n", "pretend.wav",
     "This is not an audio file the PBX can read: upload a WAV, FLAC, OGG or MP3 file."),
    (b"", "empty.wav", "The file is empty."),
    (bytes(300 * 1024), "huge.wav", "The file is larger than 0.25 MB, the most this form takes."),
])
def test_a_bad_upload_is_the_forms_error_and_nothing_changes(admin_client, settings, data,
                                                             filename, message):
    assert upload(admin_client, data=tone_wav(seconds=0.3)).status_code == 302
    before = open(settings.sounds_dir + "/ru/goodbye.wav", "rb").read()
    response = upload(admin_client, data=data, filename=filename)
    assert response.status_code == (413 if filename == "huge.wav" else 400)
    html = response.get_data(as_text=True)
    assert f'<p class="error">{message}</p>' in html
    assert 'id="upload-form"' in html  # the same page, to try another file
    assert open(settings.sounds_dir + "/ru/goodbye.wav", "rb").read() == before
    assert sorted(p.name for p in (Path(settings.sounds_dir) / "ru").iterdir()) == ["goodbye.wav"]
    assert len(audit_rows("prompt.upload")) == 1


def test_a_large_body_to_a_button_is_413_not_a_crash(admin_client, settings):
    upload(admin_client)
    response = admin_client.post("/sounds/prompts/ru/goodbye/revert",
                                 data={"pad": "x" * (2 * 1024 * 1024)})
    assert response.status_code == 413
    assert prompts.origin("goodbye", "ru", settings) == "uploaded"


def test_no_file_chosen_is_the_forms_error(admin_client, settings):
    response = admin_client.post("/sounds/prompts/en/goodbye", data={},
                                 content_type="multipart/form-data")
    assert response.status_code == 400
    assert '<p class="error">Choose a file to upload.</p>' in response.get_data(as_text=True)
    assert prompts.origin("goodbye", "en", settings) == "recorded"


def test_the_refusal_is_in_the_admins_language(admin_client, settings):
    admin_client.post("/account/language", data={"language": "ru"})
    html = upload(admin_client, data=b"not audio", filename="x.txt").get_data(as_text=True)
    assert '<p class="error">Это не аудиофайл, который может прочитать АТС' in html
    admin_client.post("/account/language", data={"language": "uz"})
    html = upload(admin_client, data=b"", filename="x.wav").get_data(as_text=True)
    assert '<p class="error">Fayl boʻsh.</p>' in html


def test_revert_goes_back_to_the_built_prompt(admin_client, settings):
    upload(admin_client, "vm-intro", "uz")
    assert prompts.origin("vm-intro", "uz", settings) == "uploaded"
    page = admin_client.get("/sounds/prompts").get_data(as_text=True)
    assert 'action="/sounds/prompts/uz/vm-intro/revert"' in page
    response = admin_client.post("/sounds/prompts/uz/vm-intro/revert")
    assert response.status_code == 302
    assert prompts.origin("vm-intro", "uz", settings) == "synthesised"
    html = admin_client.get("/sounds/prompts").get_data(as_text=True)
    assert "The prompt vm-intro (Uzbek) is the built one again." in html
    assert 'action="/sounds/prompts/uz/vm-intro/revert"' not in html
    (entry,) = audit_rows("prompt.revert")
    assert entry.target == "uz/vm-intro"
    # Nothing to revert: said so, nothing audited.
    admin_client.post("/sounds/prompts/uz/vm-intro/revert")
    assert len(audit_rows("prompt.revert")) == 1


def test_a_viewer_listens_but_changes_nothing(client, auth, settings):
    auth.login_viewer()
    html = client.get("/sounds/prompts").get_data(as_text=True)
    assert 'src="/sounds/prompts/en/goodbye/audio"' in html
    assert "Replace" not in html and "/revert" not in html
    assert client.get("/sounds/prompts/en/goodbye/audio").status_code == 200
    assert 'id="upload-form"' not in client.get("/sounds/prompts/en/goodbye").get_data(
        as_text=True)
    assert upload(client, "goodbye", "en").status_code == 403
    assert upload(client, "goodbye", "en", data=bytes(300 * 1024)).status_code == 403
    assert client.post("/sounds/prompts/en/goodbye/revert").status_code == 403
    assert prompts.origin("goodbye", "en", settings) == "recorded"
    assert AuditEntry.select().where(AuditEntry.action.startswith("prompt.")).count() == 0


def test_logged_out_sees_the_login(client):
    for path in ("/sounds/prompts", "/sounds/prompts/en/goodbye/audio"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_changes_need_the_csrf_token(tmp_path, built_prompts):
    app = make_app(tmp_path, WTF_CSRF_ENABLED=True, PROMPTS_DIR=str(built_prompts),
                   SOUNDS_DIR=str(tmp_path / "sounds"), SOUNDS_PROMPT_MAX_BYTES=256 * 1024)
    client = app.test_client()
    token = csrf_token(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": token})
    settings = app.config["PBX_SETTINGS"]
    assert upload(client, "goodbye", "en").status_code == 400
    assert prompts.origin("goodbye", "en", settings) == "recorded"
    token = csrf_token(client.get("/sounds/prompts/en/goodbye").get_data(as_text=True))
    # Too large: refused before CSRFProtect could read the body, with the form's error.
    response = upload(client, "goodbye", "en", data=bytes(300 * 1024), csrf_token=token)
    assert response.status_code == 413
    assert "The file is larger than 0.25 MB" in response.get_data(as_text=True)
    assert prompts.origin("goodbye", "en", settings) == "recorded"
    assert upload(client, "goodbye", "en", csrf_token=token).status_code == 302
    assert client.post("/sounds/prompts/en/goodbye/revert").status_code == 400
    assert prompts.origin("goodbye", "en", settings) == "uploaded"
    token = csrf_token(client.get("/sounds/prompts").get_data(as_text=True))
    assert client.post("/sounds/prompts/en/goodbye/revert",
                       data={"csrf_token": token}).status_code == 302
    assert prompts.origin("goodbye", "en", settings) == "recorded"

"""Music on hold in the panel (app/sounds/, core/music.py): the library under
PBX_SOUNDS_DIR/moh/ with the shipped default always in it, uploads converted by
sox (anything else refused with the form's error, nothing added), a player,
choosing what plays (the Setting row sipd reads at each hold), deleting; the
legacy PBX_SOUNDS_DIR/moh.wav taken into the library and kept playing."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from panel_testing import make_app
from test_panel_sounds import ULAW, tone_wav, wav_format

from core import music, sounds
from core.config import DEFAULT_MOH
from core.models import AuditEntry, Setting


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path, SOUNDS_DIR=str(tmp_path / "sounds"),
                    SOUNDS_MUSIC_MAX_BYTES=512 * 1024)


@pytest.fixture
def settings(app):
    return app.config["PBX_SETTINGS"]


def add(client, data=None, filename="Jazz Loop.wav"):
    data = tone_wav(seconds=1.5) if data is None else data
    return client.post("/sounds/music", data={"file": (io.BytesIO(data), filename)},
                       content_type="multipart/form-data")


def library(settings) -> list[str]:
    directory = Path(settings.sounds_dir) / "moh"
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def now_playing(settings) -> str:
    return music.playing(settings.sounds_dir, settings.moh_file)[0]


def actions(name: str) -> list[str]:
    return [e.action for e in AuditEntry.select().where(AuditEntry.action.startswith("moh."),
                                                        AuditEntry.target == name)]


def test_the_shipped_tune_is_listed_playing_and_plays(admin_client, settings):
    html = admin_client.get("/sounds/music").get_data(as_text=True)
    row = html.split('id="music-default"')[1].split("</tr>")[0]
    assert 'data-chosen="1"' in row and "plays on hold" in row
    assert str(DEFAULT_MOH) in row and "PBX_MOH_FILE" in row
    seconds = round(sounds.duration(DEFAULT_MOH))
    assert f"{seconds // 60}:{seconds % 60:02d}" in row
    assert "/delete" not in row and "/choose" not in row  # nothing to do with it yet
    assert 'href="/sounds/music"' in html  # the tab beside the prompts
    response = admin_client.get("/sounds/music/default/audio")
    assert response.status_code == 200 and response.mimetype == "audio/wav"
    assert response.data == DEFAULT_MOH.read_bytes()
    part = admin_client.get("/sounds/music/default/audio", headers={"Range": "bytes=0-3"})
    assert part.status_code == 206 and part.data == b"RIFF"
    assert now_playing(settings) == str(DEFAULT_MOH)


def test_an_upload_joins_the_library_converted_and_is_chosen_to_play(admin_client, settings):
    response = add(admin_client)
    assert response.status_code == 302
    assert response.headers["Location"] == "/sounds/music#music-jazz-loop"
    assert library(settings) == ["jazz-loop.wav"]
    stored = Path(settings.sounds_dir) / "moh" / "jazz-loop.wav"
    assert wav_format(stored.read_bytes()) == (ULAW, 1, 8000)
    html = admin_client.get("/sounds/music").get_data(as_text=True)
    assert "jazz-loop is in the library. Choose it to play it to held callers." in html
    row = html.split('id="music-jazz-loop"')[1].split("</tr>")[0]
    assert "0:02" in row and 'src="/sounds/music/jazz-loop/audio"' in row  # 1.5 s, rounded
    assert 'data-chosen="1"' not in row
    assert now_playing(settings) == str(DEFAULT_MOH)  # added is not chosen
    assert admin_client.get("/sounds/music/jazz-loop/audio").data == stored.read_bytes()

    assert admin_client.post("/sounds/music/jazz-loop/choose").status_code == 302
    assert Setting.get(Setting.key == "music_on_hold").value == "jazz-loop"
    assert now_playing(settings) == str(stored)
    html = admin_client.get("/sounds/music").get_data(as_text=True)
    assert "Held callers hear jazz-loop from the next hold on." in html
    assert 'data-chosen="1"' in html.split('id="music-jazz-loop"')[1].split("</tr>")[0]
    assert 'data-chosen="1"' not in html.split('id="music-default"')[1].split("</tr>")[0]
    assert actions("jazz-loop") == ["moh.upload", "moh.choose"]

    # and back to the default
    assert admin_client.post("/sounds/music/default/choose").status_code == 302
    assert Setting.get(Setting.key == "music_on_hold").value == ""
    assert now_playing(settings) == str(DEFAULT_MOH)
    assert actions("default") == ["moh.choose"]


def test_the_same_name_twice_gets_a_number(admin_client, settings):
    add(admin_client)
    add(admin_client, filename="JAZZ_LOOP.WAV")
    add(admin_client, filename="default.wav")  # the default's name is taken
    add(admin_client, filename="../../Музыка.wav")
    assert library(settings) == ["default-2.wav", "jazz-loop-2.wav", "jazz-loop.wav",
                                 "музыка.wav"]


def test_an_mp3_is_music_too(admin_client, settings, tmp_path):
    source, mp3 = tmp_path / "tone.wav", tmp_path / "tone.mp3"
    source.write_bytes(tone_wav(seconds=2.0))
    made = subprocess.run(["sox", str(source), str(mp3)], capture_output=True, text=True)
    assert made.returncode == 0, f"sox cannot write MP3 (apt-get install libsox-fmt-mp3): " \
                                 f"{made.stderr}"
    assert add(admin_client, mp3.read_bytes(), "Tone.mp3").status_code == 302
    stored = Path(settings.sounds_dir) / "moh" / "tone.wav"
    assert wav_format(stored.read_bytes()) == (ULAW, 1, 8000)
    assert sounds.duration(stored) == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize(("data", "filename", "status", "message"), [
    (b"Track list:\n1. Hold the line\n", "tracks.txt", 400,
     "This is not an audio file the PBX can read: upload a WAV, FLAC, OGG or MP3 file."),
    (b"", "silence.mp3", 400, "The file is empty."),
    (bytes(600 * 1024), "long.wav", 413,
     "The file is larger than 0.5 MB, the most this form takes."),
])
def test_a_bad_upload_is_the_forms_error_and_nothing_is_added(admin_client, settings, data,
                                                              filename, status, message):
    add(admin_client)
    admin_client.post("/sounds/music/jazz-loop/choose")
    before = (Path(settings.sounds_dir) / "moh" / "jazz-loop.wav").read_bytes()
    response = add(admin_client, data, filename)
    assert response.status_code == status
    html = response.get_data(as_text=True)
    assert f'<p class="error">{message}</p>' in html and 'id="music-default"' in html
    assert library(settings) == ["jazz-loop.wav"]
    assert (Path(settings.sounds_dir) / "moh" / "jazz-loop.wav").read_bytes() == before
    assert now_playing(settings).endswith("/moh/jazz-loop.wav")
    assert AuditEntry.select().where(AuditEntry.action == "moh.upload").count() == 1


def test_no_file_chosen_is_the_forms_error(admin_client, settings):
    response = admin_client.post("/sounds/music", data={}, content_type="multipart/form-data")
    assert response.status_code == 400
    assert '<p class="error">Choose a file to upload.</p>' in response.get_data(as_text=True)


def test_deleting_what_plays_goes_back_to_the_default(admin_client, settings):
    add(admin_client)
    add(admin_client, filename="piano.wav")
    admin_client.post("/sounds/music/piano/choose")
    assert admin_client.post("/sounds/music/jazz-loop/delete").status_code == 302
    assert "jazz-loop deleted." in admin_client.get("/sounds/music").get_data(as_text=True)
    assert now_playing(settings).endswith("/moh/piano.wav")
    assert admin_client.post("/sounds/music/piano/delete").status_code == 302
    html = admin_client.get("/sounds/music").get_data(as_text=True)
    assert ("piano deleted. It was playing on hold: held callers hear the default music now."
            in html)
    assert library(settings) == []
    assert now_playing(settings) == str(DEFAULT_MOH)
    assert 'data-chosen="1"' in html.split('id="music-default"')[1].split("</tr>")[0]
    (entry,) = AuditEntry.select().where(AuditEntry.action == "moh.delete",
                                         AuditEntry.target == "piano")
    assert entry.detail == "was playing; the default plays now"


def test_the_default_stays_and_unknown_names_are_404(admin_client, settings):
    response = admin_client.post("/sounds/music/default/delete")
    assert response.status_code == 400
    assert "The default music cannot be deleted." in response.get_data(as_text=True)
    assert DEFAULT_MOH.is_file()
    for path in ("/sounds/music/nothing/audio", "/sounds/music/..%2F..%2Fpbx.db/audio",
                 "/sounds/music/.upload-x/audio"):
        assert admin_client.get(path).status_code == 404, path
    for path in ("/sounds/music/nothing/choose", "/sounds/music/nothing/delete"):
        assert admin_client.post(path).status_code == 404, path
    assert Setting.get_or_none(Setting.key == "music_on_hold") is None


def test_a_missing_default_file_is_said(tmp_path):
    app = make_app(tmp_path, SOUNDS_DIR=str(tmp_path / "sounds"),
                   MOH_FILE=str(tmp_path / "gone.wav"))
    client = app.test_client()
    client.post("/login", data={"username": "admin", "password": "brass-kettle-window-8"})
    row = client.get("/sounds/music").get_data(as_text=True).split('id="music-default"')[1]
    assert "file missing" in row.split("</tr>")[0]
    assert client.get("/sounds/music/default/audio").status_code == 404


def test_the_legacy_upload_is_taken_into_the_library_and_keeps_playing(admin_client, settings):
    legacy = Path(settings.sounds_dir) / "moh.wav"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(tone_wav(seconds=1.0, rate=8000, channels=1))  # any WAV, as before
    assert now_playing(settings) == str(legacy)  # before the panel looked: as it always was
    html = admin_client.get("/sounds/music").get_data(as_text=True)
    assert 'data-chosen="1"' in html.split('id="music-moh"')[1].split("</tr>")[0]
    assert not legacy.exists() and library(settings) == ["moh.wav"]
    stored = Path(settings.sounds_dir) / "moh" / "moh.wav"
    assert wav_format(stored.read_bytes()) == (ULAW, 1, 8000)
    assert now_playing(settings) == str(stored)
    # A choice made before a moh.wav appeared again is kept.
    admin_client.post("/sounds/music/default/choose")
    legacy.write_bytes(tone_wav(seconds=1.0))
    admin_client.get("/sounds/music")
    assert library(settings) == ["moh-2.wav", "moh.wav"]
    assert now_playing(settings) == str(DEFAULT_MOH)


def test_a_viewer_listens_but_changes_nothing(client, auth, settings):
    auth.login_viewer()
    html = client.get("/sounds/music").get_data(as_text=True)
    assert 'src="/sounds/music/default/audio"' in html
    assert 'id="upload-form"' not in html and "/choose" not in html
    assert client.get("/sounds/music/default/audio").status_code == 200
    assert add(client).status_code == 403
    assert add(client, bytes(600 * 1024)).status_code == 403
    assert client.post("/sounds/music/default/choose").status_code == 403
    assert library(settings) == []
    assert Setting.get_or_none(Setting.key == "music_on_hold") is None

"""core/music.py: which file plays on hold (`playing`, what sipd asks at each
hold) from the Setting row, the library and the legacy PBX_SOUNDS_DIR/moh.wav;
a hold never fails for it."""

from __future__ import annotations

import math
import struct
import wave

import pytest

from core import music
from core.config import load_settings
from core.database import connect
from core.models import Setting, db


@pytest.fixture
def settings(tmp_path):
    return load_settings({"PBX_DB": str(tmp_path / "pbx.db"), "PBX_REALM": "pbx.test",
                          "PBX_SOUNDS_DIR": str(tmp_path / "sounds")})


@pytest.fixture
def database(settings):
    database = connect(settings)
    yield database
    database.close()


def write_tone(path, seconds=0.5):
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"".join(struct.pack("<h", int(9000 * math.sin(n / 5)))
                                 for n in range(int(16000 * seconds))))
    return path


def playing(settings):
    return music.playing(settings.sounds_dir, settings.moh_file)


def test_nothing_chosen_plays_the_default_or_the_legacy_upload(database, settings, tmp_path):
    assert playing(settings) == (settings.moh_file, "")
    legacy = write_tone(tmp_path / "sounds" / "moh.wav")
    assert playing(settings) == (str(legacy), "")


def test_the_chosen_upload_plays_and_the_default_when_chosen(database, settings, tmp_path):
    source = write_tone(tmp_path / "Piano Solo.wav")
    name = music.add(source.read_bytes(), source.name, settings)
    assert name == "piano-solo"
    music.choose(name, settings)
    assert playing(settings) == (str(tmp_path / "sounds" / "moh" / "piano-solo.wav"), "")
    write_tone(tmp_path / "sounds" / "moh.wav")  # a legacy file does not beat a choice
    assert playing(settings)[0].endswith("/moh/piano-solo.wav")
    music.choose(music.DEFAULT, settings)
    assert playing(settings) == (settings.moh_file, "")
    assert Setting.get(Setting.key == music.KEY).value == ""


def test_a_chosen_file_gone_plays_the_default_and_says_why(database, settings, tmp_path):
    name = music.add(write_tone(tmp_path / "a.wav").read_bytes(), "a.wav", settings)
    music.choose(name, settings)
    (tmp_path / "sounds" / "moh" / "a.wav").unlink()
    file, why = playing(settings)
    assert file == settings.moh_file
    assert why.startswith("the chosen music 'a' is missing (") and "\n" not in why
    assert music.current(settings) == music.DEFAULT


@pytest.mark.parametrize("value", ["../pbx", "a/b", ".hidden", ""])
def test_a_row_naming_no_library_file_plays_the_default(database, settings, value):
    Setting.create(key=music.KEY, value=value)
    assert playing(settings)[0] == settings.moh_file


def test_an_unreadable_choice_plays_the_default(settings):
    db.initialize(None)  # no database bound: the choice cannot be read, the hold goes on
    file, why = playing(settings)
    assert file == settings.moh_file and why.startswith("the choice of music cannot be read")


def test_unknown_names_are_refused(database, settings):
    with pytest.raises(music.MusicError):
        music.choose("nothing", settings)
    with pytest.raises(music.MusicError):
        music.delete(music.DEFAULT, settings)
    assert Setting.get_or_none(Setting.key == music.KEY) is None

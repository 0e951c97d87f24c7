"""core/sounds.py (an upload converted to 8 kHz mono µ-law, anything else refused)
and core/prompts.py (built prompts per language, an admin's upload winning,
`pbxctl prompts build|list`)."""

from __future__ import annotations

import math
import struct
import wave

import pytest

import pbxcli
from core import prompts, sounds
from core.config import load_settings

ULAW = 7  # WAVE_FORMAT_MULAW (RFC 2361)


def wav_format(path) -> tuple[int, int, int, int]:
    """(format tag, channels, rate, bits) read from the fmt chunk, the way a
    player would (the wave module refuses µ-law)."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", path
    offset = 12
    while offset < len(data):
        chunk, size = data[offset:offset + 4], struct.unpack("<I", data[offset + 4:offset + 8])[0]
        if chunk == b"fmt ":
            tag, channels, rate = struct.unpack("<HHI", data[offset + 8:offset + 16])
            bits = struct.unpack("<H", data[offset + 22:offset + 24])[0]
            return tag, channels, rate, bits
        offset += 8 + size + (size & 1)
    raise AssertionError(f"{path}: no fmt chunk")


def write_tone(path, rate=44100, channels=2, seconds=0.5, hz=440):
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = bytearray()
        for n in range(int(rate * seconds)):
            sample = int(12000 * math.sin(2 * math.pi * hz * n / rate))
            frames += struct.pack("<h", sample) * channels
        out.writeframes(bytes(frames))


def test_a_stereo_44k_wav_becomes_8k_mono_ulaw(tmp_path):
    source = tmp_path / "hello.wav"
    write_tone(source)
    target = sounds.convert(source, tmp_path / "out" / "hello.wav")
    assert wav_format(target) == (ULAW, 1, 8000, 8)
    assert sounds.duration(target) == pytest.approx(0.5, abs=0.01)


def test_a_flac_is_audio_too(tmp_path):
    source = tmp_path / "tone.wav"
    write_tone(source, rate=16000, channels=1)
    import subprocess
    subprocess.run(["sox", str(source), str(tmp_path / "tone.flac")], check=True)
    target = sounds.convert(tmp_path / "tone.flac", tmp_path / "t.wav")
    assert wav_format(target) == (ULAW, 1, 8000, 8)


@pytest.mark.parametrize("content", [b"this is not audio\n", b"RIFF\x10\x00\x00\x00WAVEjunk",
                                     b"%PDF-1.4\n" + bytes(200)])
def test_a_file_that_is_not_audio_is_refused_and_nothing_replaced(tmp_path, content):
    source = tmp_path / "upload.wav"
    source.write_bytes(content)
    target = tmp_path / "kept.wav"
    target.write_bytes(b"previous")
    with pytest.raises(sounds.SoundError) as refused:
        sounds.convert(source, target)
    assert "\n" not in str(refused.value) and "upload.wav" in str(refused.value)
    assert "not an audio file" in str(refused.value)
    assert refused.value.kind == "not_audio"  # what the panel words in the admin's language
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.wav", "upload.wav"]


def test_an_empty_upload_is_refused(tmp_path):
    with pytest.raises(sounds.SoundError, match="empty") as refused:
        sounds.convert_upload(b"", tmp_path / "x.wav", "x.wav")
    assert refused.value.kind == "empty"
    assert not (tmp_path / "x.wav").exists()


def test_every_prompt_in_every_language_is_built(prompts_env):
    settings = load_settings()
    for name in prompts.PROMPTS:
        for language in prompts.LANGUAGES:
            built = prompts.path(name, language, settings)
            assert built == prompts_env / language / f"{name}.wav"
            assert wav_format(built) == (ULAW, 1, 8000, 8), built
            assert sounds.duration(built) > 0.05, built


def test_english_is_asterisks_recording_and_uz_ru_are_spoken(prompts_env):
    # The English "goodbye" has the recording's length; the Uzbek and Russian
    # texts are different audio (espeak-ng), and differ from each other.
    recording = prompts.ASTERISK_SOUNDS / "goodbye.wav"
    assert sounds.duration(prompts.path("goodbye", "en")) == pytest.approx(
        sounds.duration(recording), abs=0.01)
    en, uz, ru = (prompts.path("vm-intro", lang).read_bytes() for lang in prompts.LANGUAGES)
    assert len({en, uz, ru}) == 3
    # A beep has no words: every language plays Asterisk's.
    assert prompts.path("beep", "uz").read_bytes() == prompts.path("beep", "en").read_bytes()


def test_the_voicemail_and_ivr_names_are_all_there():
    needed = ("vm-intro vm-theperson vm-isunavail vm-isonphone beep vm-password vm-incorrect"
              " vm-login vm-youhave vm-INBOX vm-Old vm-messages vm-message vm-nomore"
              " vm-instructions vm-deleted vm-saved vm-goodbye option-is-invalid goodbye").split()
    assert set(needed) | {f"digits/{d}" for d in range(10)} <= set(prompts.PROMPTS)
    for name, entry in prompts.PROMPTS.items():
        for language in ("uz", "ru"):
            assert entry[language] or entry["asterisk"], (name, language)


def test_an_upload_replaces_one_prompt_in_one_language(prompts_env, tmp_path):
    settings = load_settings()
    source = tmp_path / "mine.wav"
    write_tone(source, seconds=1.0)
    uploaded = prompts.upload("goodbye", "ru", source.read_bytes(), "mine.wav", settings)
    assert uploaded == tmp_path / "sounds" / "ru" / "goodbye.wav"
    assert prompts.path("goodbye", "ru", settings) == uploaded
    assert sounds.duration(uploaded) == pytest.approx(1.0, abs=0.01)
    assert prompts.path("goodbye", "uz", settings) == prompts_env / "uz" / "goodbye.wav"
    assert prompts.path("goodbye", "", settings) == prompts_env / "en" / "goodbye.wav"
    assert [prompts.origin("goodbye", lang, settings) for lang in prompts.LANGUAGES] == [
        "recorded", "synthesised", "uploaded"]
    assert prompts.remove_upload("goodbye", "ru", settings)
    assert prompts.origin("goodbye", "ru", settings) == "synthesised"
    assert prompts.path("goodbye", "ru", settings) == prompts_env / "ru" / "goodbye.wav"


def test_an_upload_that_is_not_audio_keeps_the_prompt(prompts_env):
    settings = load_settings()
    with pytest.raises(prompts.PromptError, match="not an audio file") as refused:
        prompts.upload("goodbye", "en", b"<html>nope</html>", "page.wav", settings)
    assert refused.value.kind == "not_audio"
    assert prompts.path("goodbye", "en", settings) == prompts_env / "en" / "goodbye.wav"


def test_unknown_names_and_languages_are_key_errors(prompts_env):
    with pytest.raises(KeyError):
        prompts.path("no-such-prompt")
    with pytest.raises(KeyError):
        prompts.path("goodbye", "de")


def test_number_is_spoken_digit_by_digit(prompts_env):
    spoken = prompts.number("1001", "uz")
    assert [p.name for p in spoken] == ["1.wav", "0.wav", "0.wav", "1.wav"]
    assert all(p.parent == prompts_env / "uz" / "digits" for p in spoken)
    with pytest.raises(ValueError):
        prompts.number("10a1", "en")


def test_build_writes_only_what_changed(tmp_path, monkeypatch):
    monkeypatch.setitem(prompts.PROMPTS, "test-only", prompts._p(None, "one", "bir", "один"))
    small = {"test-only": prompts.PROMPTS["test-only"], "beep": prompts.PROMPTS["beep"]}
    monkeypatch.setattr(prompts, "PROMPTS", small)
    assert prompts.build(directory=tmp_path) == 6
    assert prompts.build(directory=tmp_path) == 0
    monkeypatch.setitem(small, "test-only", prompts._p(None, "one", "bir", "одна"))
    assert prompts.build(directory=tmp_path) == 1  # only ru changed
    assert prompts.build(directory=tmp_path, force=True) == 6


def test_pbxctl_prompts_build_and_list(tmp_path, monkeypatch, capsys):
    for name in [n for n in __import__("os").environ if n.startswith("PBX_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PBX_PROMPTS_DIR", str(tmp_path / "prompts"))
    monkeypatch.setenv("PBX_SOUNDS_DIR", str(tmp_path / "sounds"))
    monkeypatch.setattr(prompts, "PROMPTS", {"beep": prompts.PROMPTS["beep"],
                                              "digits/1": prompts.PROMPTS["digits/1"]})
    assert pbxcli.main(["prompts", "build"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"Prompts in {tmp_path / 'prompts'}: 6 built, 0 up to date")
    assert pbxcli.main(["prompts", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "LANGUAGE", "SOURCE", "FILE"]
    assert out[1].split() == ["beep", "en", "built", str(tmp_path / "prompts/en/beep.wav")]
    assert len(out) == 7


def test_pbxctl_prompts_build_without_the_recordings_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PBX_PROMPTS_DIR", str(tmp_path / "prompts"))
    monkeypatch.setattr(prompts, "ASTERISK_SOUNDS", tmp_path / "nowhere")
    monkeypatch.setattr(prompts, "PROMPTS", {"beep": prompts.PROMPTS["beep"]})
    assert pbxcli.main(["prompts", "build"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "asterisk-core-sounds-en-wav" in err

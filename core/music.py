"""Music on hold: the library of music an admin uploads, and which of it plays.

The library is PBX_SOUNDS_DIR/moh/NAME.wav, each file converted once by
core/sounds.py to what the endpoint plays (8 kHz mono µ-law). Beside it there is
always the default, PBX_MOH_FILE (by default the tune shipped with sipd), which
no upload replaces or removes.

What plays is the Setting row "music_on_hold": "" for the default, else the
NAME of a file in the library. sipd reads it each time a hold starts
(`playing()`, from sipd/b2bua/music.py), so a choice made in the panel is heard
on the next hold, without a restart.

Before the library there was one upload, PBX_SOUNDS_DIR/moh.wav, which won over
PBX_MOH_FILE. Without a row it still does; the panel's first look at the library
(`library()`) converts it into the library and chooses it (unless something else
was chosen), then removes it, so what callers hear stays the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from peewee import PeeweeException

from core import sounds
from core.config import Settings, load_settings
from core.models import Setting

KEY = "music_on_hold"
DEFAULT = "default"  # the default's name in the library; no upload is given it
LIBRARY = "moh"
LEGACY = "moh.wav"
NAME = re.compile(r"[^\W_][\w-]{0,47}")  # a file name without .wav: no dots, no slashes


class MusicError(Exception):
    """An upload refused or a name not in the library (one line). `kind`:
    core/sounds.py SoundError's for an upload, "unknown" for a name."""

    def __init__(self, message: str, kind: str = "unknown"):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Music:
    name: str  # DEFAULT, or the file's name without .wav
    path: Path
    seconds: float  # 0.0: the file is missing, or not audio sox can read
    chosen: bool  # what plays on the next hold

    @property
    def default(self) -> bool:
        return self.name == DEFAULT

    @property
    def exists(self) -> bool:
        return self.path.is_file()


def _settings(settings: Settings | None) -> Settings:
    return settings if settings is not None else load_settings()


def library_dir(settings: Settings | None = None) -> Path:
    return Path(_settings(settings).sounds_dir) / LIBRARY


def chosen() -> str | None:
    """The Setting row: "" (the default), a NAME, or None when nothing was ever chosen."""
    row = Setting.get_or_none(Setting.key == KEY)
    return None if row is None else row.value


def playing(sounds_dir: str | None, default: str) -> tuple[str, str]:
    """(the file to play on the next hold, why it is not the chosen one or "").
    Nothing here may fail a hold: a database that cannot be read, or a chosen
    file gone, plays `default` (PBX_MOH_FILE) and says why."""
    try:
        name = chosen()
    except (PeeweeException, AttributeError) as error:  # AttributeError: no database bound
        return default, f"the choice of music cannot be read ({error})"
    base = Path(sounds_dir) if sounds_dir else None
    if name is None:
        legacy = base / LEGACY if base else None
        return (str(legacy), "") if legacy and legacy.is_file() else (default, "")
    if not name or name == DEFAULT:
        return default, ""
    path = base / LIBRARY / f"{name}.wav" if base and NAME.fullmatch(name) else None
    if path is None or not path.is_file():
        return default, f"the chosen music {name!r} is missing ({path or 'no PBX_SOUNDS_DIR'})"
    return str(path), ""


def _names(settings: Settings) -> list[str]:
    directory = library_dir(settings)
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.wav")
                  if NAME.fullmatch(p.stem) and p.stem != DEFAULT and p.is_file())


def path_of(name: str, settings: Settings | None = None) -> Path:
    """The file of `name` (DEFAULT: PBX_MOH_FILE); MusicError when it is not in the library."""
    settings = _settings(settings)
    if name == DEFAULT:
        return Path(settings.moh_file)
    if name not in _names(settings):
        raise MusicError(f"there is no music {name!r} in the library")
    return library_dir(settings) / f"{name}.wav"


def current(settings: Settings | None = None) -> str:
    """The name in the library that plays on the next hold (DEFAULT when the
    chosen one is gone, as sipd then plays the default)."""
    settings = _settings(settings)
    name = chosen()
    return name if name and name in _names(settings) else DEFAULT


def library(settings: Settings | None = None) -> list[Music]:
    """The default first, then the uploads by name; the legacy moh.wav moved in first."""
    settings = _settings(settings)
    _adopt_legacy(settings)
    playing_now = current(settings)
    entries = [Music(DEFAULT, Path(settings.moh_file), 0.0, playing_now == DEFAULT)]
    entries += [Music(name, library_dir(settings) / f"{name}.wav", 0.0, playing_now == name)
                for name in _names(settings)]
    return [Music(e.name, e.path, sounds.duration(e.path) if e.exists else 0.0, e.chosen)
            for e in entries]


def _free_name(filename: str, settings: Settings) -> str:
    stem = Path(filename).stem.lower()
    base = re.sub(r"[^\w]+|_+", "-", stem).strip("-")[:40] or "music"
    taken = set(_names(settings)) | {DEFAULT}
    name, number = base, 2
    while name in taken:
        name, number = f"{base}-{number}", number + 1
    return name


def check_name(name: str, settings: Settings | None = None) -> str:
    """A name an admin gives new music (`pbxctl moh add --name`): what names made from
    a file name are (lowercase, no "_"), not the default's, not taken; MusicError if not."""
    if not NAME.fullmatch(name) or name != name.lower() or "_" in name:
        raise MusicError(f"a music name is lowercase letters, digits and '-' (at most 48,"
                         f" e.g. lobby-jazz), not {name!r}", "name")
    if name == DEFAULT or name in _names(_settings(settings)):
        raise MusicError(f"there is music {name!r} in the library already", "name")
    return name


def add(data: bytes, filename: str, settings: Settings | None = None,
        name: str | None = None) -> str:
    """Convert an upload into the library under `name` (check_name's rules) or else a
    name made from `filename` (made unique); returns the name. Nothing is written
    when it is refused."""
    settings = _settings(settings)
    name = check_name(name, settings) if name is not None else _free_name(filename, settings)
    try:
        sounds.convert_upload(data, library_dir(settings) / f"{name}.wav", filename)
    except sounds.SoundError as error:
        raise MusicError(str(error), error.kind) from None
    return name


def choose(name: str, settings: Settings | None = None) -> None:
    """Play `name` (DEFAULT or an upload) from the next hold on."""
    path_of(name, settings)  # MusicError when there is no such music
    _write("" if name == DEFAULT else name)


def delete(name: str, settings: Settings | None = None) -> bool:
    """Remove an upload; True when it was the chosen one (the default plays instead).
    The default cannot be removed."""
    if name == DEFAULT:
        raise MusicError("the default music cannot be removed", "default")
    settings = _settings(settings)
    path = path_of(name, settings)
    was_chosen = chosen() == name
    if was_chosen:
        _write("")  # first, so no hold starts on a file about to go
    path.unlink(missing_ok=True)
    return was_chosen


def _write(value: str) -> None:
    (Setting.insert(key=KEY, value=value)
     .on_conflict(conflict_target=[Setting.key], update={Setting.value: value})
     .execute())


def _adopt_legacy(settings: Settings) -> None:
    legacy = Path(settings.sounds_dir) / LEGACY
    if not legacy.is_file():
        return
    name = _free_name(LEGACY, settings)
    try:
        sounds.convert(legacy, library_dir(settings) / f"{name}.wav")
    except sounds.SoundError:
        return  # left where it is: sipd plays it as before, or fails as before
    if chosen() is None:
        _write(name)  # before the old file goes, so a hold never falls between the two
    legacy.unlink(missing_ok=True)

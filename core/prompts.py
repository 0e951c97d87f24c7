"""The PBX's spoken prompts, in each language its users speak (issue 13 item 6).

English is Asterisk's recorded set (Debian's asterisk-core-sounds-en-wav, voice
"Allison", CC BY-SA 3.0; README.md attributes it); Uzbek and Russian are spoken
by espeak-ng from the texts below. `build()` (`pbxctl prompts build`, run at
install: `make run`, the Ansible role) converts them all once to the endpoint's
format (core/sounds.py) under PBX_PROMPTS_DIR; nothing is generated at call
time. An admin's recording of a prompt, uploaded into PBX_SOUNDS_DIR under the
same LANGUAGE/NAME.wav, replaces the built one (`path()`).

Each entry of PROMPTS: "asterisk" names the recorded English file (without
.wav) when there is one that says the English text; a language whose text is
None uses that recording as it is (a beep is a beep in every language).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from core import sounds
from core.config import Settings, load_settings

LANGUAGES = ("en", "uz", "ru")
ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
# espeak-ng's voice per language (`espeak-ng --voices`); English is used only for
# an entry without a recording.
VOICES = {"en": "en-us", "uz": "uz", "ru": "ru"}
MANIFEST = "manifest.json"


class PromptError(Exception):
    """A prompt that cannot be built or uploaded (one line); an upload's `kind` is
    core/sounds.py SoundError's (what was wrong with the file), "" otherwise."""

    def __init__(self, message: str, kind: str = ""):
        super().__init__(message)
        self.kind = kind


def _p(asterisk: str | None, en: str | None, uz: str | None, ru: str | None) -> dict:
    return {"asterisk": asterisk, "en": en, "uz": uz, "ru": ru}


_DIGITS_UZ = ("nol", "bir", "ikki", "uch", "to'rt", "besh", "olti", "yetti", "sakkiz", "to'qqiz")
_DIGITS_RU = ("ноль", "один", "два", "три", "четыре", "пять", "шесть", "семь", "восемь",
              "девять")
_DIGITS_EN = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

PROMPTS: dict[str, dict] = {
    # Voicemail (sipd/apps/voicemail.py).
    "vm-intro": _p(
        "vm-intro",
        "Please leave your message after the tone. When done, hang up, or press the pound key.",
        "Iltimos, signaldan keyin xabaringizni qoldiring. Tugatgach, go'shakni qo'ying"
        " yoki panjara tugmasini bosing.",
        "Пожалуйста, оставьте сообщение после сигнала. Закончив, положите трубку"
        " или нажмите решётку.",
    ),
    "vm-theperson": _p("vm-theperson", "The person at extension", "Ichki raqam egasi",
                       "Абонент с внутренним номером"),
    "vm-isunavail": _p("vm-isunavail", "is unavailable.", "hozir javob bera olmaydi.",
                       "сейчас недоступен."),
    "vm-isonphone": _p("vm-isonphone", "is on the phone.", "hozir boshqa qo'ng'iroqda.",
                       "сейчас разговаривает по телефону."),
    "beep": _p("beep", None, None, None),
    "vm-password": _p("vm-password", "Password.", "Parolni kiriting.", "Введите пароль."),
    "vm-incorrect": _p("vm-incorrect", "Login incorrect.", "Kirish noto'g'ri.", "Неверный вход."),
    "vm-login": _p("vm-login", "Mailbox?", "Pochta qutisi raqamini kiriting.",
                   "Введите номер почтового ящика."),
    "vm-youhave": _p("vm-youhave", "You have", "Sizda", "У вас"),
    "vm-INBOX": _p("vm-INBOX", "new", "yangi", "новых"),
    "vm-Old": _p("vm-Old", "old", "eski", "старых"),
    "vm-messages": _p("vm-messages", "messages.", "xabar bor.", "сообщений."),
    "vm-message": _p("vm-message", "message.", "xabar bor.", "сообщение."),
    "vm-nomore": _p("vm-nomore", "No more messages.", "Boshqa xabar yo'q.",
                    "Больше сообщений нет."),
    # Asterisk's vm-instructions names Asterisk's own keys (5 repeat, 6 next...):
    # ours differ, so this one is spoken in English too.
    "vm-instructions": _p(
        None,
        "To hear the message again, press 1. To delete it, press 7. To save it, press 9."
        " For the next message, press pound.",
        "Xabarni qayta eshitish uchun 1 ni bosing. O'chirish uchun 7 ni bosing."
        " Saqlash uchun 9 ni bosing. Keyingi xabar uchun panjarani bosing.",
        "Чтобы прослушать сообщение ещё раз, нажмите 1. Чтобы удалить, нажмите 7."
        " Чтобы сохранить, нажмите 9. Следующее сообщение: нажмите решётку.",
    ),
    "vm-deleted": _p("vm-deleted", "Message deleted.", "Xabar o'chirildi.", "Сообщение удалено."),
    # *97's menu and the greeting recorded by phone (keys: sipd/apps/voicemail.py).
    "vm-menu": _p(
        None,
        "To hear your messages, press 1. For your greeting, press 0. To end the call,"
        " press pound.",
        "Xabarlaringizni eshitish uchun 1 ni bosing. Salomlashuv uchun 0 ni bosing."
        " Qo'ng'iroqni tugatish uchun panjarani bosing.",
        "Чтобы прослушать сообщения, нажмите 1. Для приветствия нажмите 0. Чтобы закончить"
        " звонок, нажмите решётку.",
    ),
    "vm-greeting-menu": _p(
        None,
        "To record your greeting, press 1. To hear it, press 2. To delete it and use the"
        " standard greeting, press 3. To go back, press star.",
        "Salomlashuvni yozib olish uchun 1 ni bosing. Uni eshitish uchun 2 ni bosing. Uni"
        " o'chirib, standart salomlashuvga qaytish uchun 3 ni bosing. Orqaga qaytish uchun"
        " yulduzchani bosing.",
        "Чтобы записать приветствие, нажмите 1. Чтобы прослушать его, нажмите 2. Чтобы"
        " удалить его и вернуть стандартное приветствие, нажмите 3. Чтобы вернуться,"
        " нажмите звёздочку.",
    ),
    "vm-rec-greeting": _p("vm-rec-unv",
                          "After the tone, say your unavailable message, then press pound.",
                          "Signaldan keyin salomlashuvingizni ayting, so'ng panjarani bosing.",
                          "После сигнала произнесите приветствие, затем нажмите решётку."),
    "vm-review": _p(
        "vm-review",
        "Press 1 to accept this recording. Press 2 to listen to it. Press 3 to rerecord"
        " your message.",
        "Yozuvni qabul qilish uchun 1 ni bosing. Uni eshitish uchun 2 ni bosing. Qayta"
        " yozish uchun 3 ni bosing.",
        "Чтобы принять запись, нажмите 1. Чтобы прослушать её, нажмите 2. Чтобы записать"
        " заново, нажмите 3.",
    ),
    "vm-tooshort": _p("vm-tooshort", "Your message is too short.",
                      "Yozuv juda qisqa, saqlanmadi.", "Запись слишком короткая и не сохранена."),
    "vm-greeting-saved": _p(None, "Your greeting is saved.", "Salomlashuvingiz saqlandi.",
                            "Ваше приветствие сохранено."),
    "vm-greeting-deleted": _p(
        None, "Your greeting is deleted. Callers hear the standard greeting.",
        "Salomlashuvingiz o'chirildi. Qo'ng'iroq qiluvchilar standart salomlashuvni eshitadi.",
        "Ваше приветствие удалено. Звонящие услышат стандартное приветствие.",
    ),
    "vm-saved": _p("vm-saved", "Message saved.", "Xabar saqlandi.", "Сообщение сохранено."),
    "vm-goodbye": _p("vm-goodbye", "Goodbye.", "Xayr.", "До свидания."),
    # IVR (sipd/apps/ivr.py).
    "option-is-invalid": _p("pm-invalid-option", "That is not a valid option.",
                            "Noto'g'ri tanlov.", "Неверный выбор."),
    "please-try-again": _p("please-try-again", "Please try again.",
                           "Iltimos, qaytadan urinib ko'ring.", "Пожалуйста, попробуйте ещё раз."),
    "pls-hold-while-try": _p("pls-hold-while-try", "Please hold while I try that extension.",
                             "Iltimos, kuting, ulayapman.", "Пожалуйста, подождите, соединяю."),
    "goodbye": _p("goodbye", "Goodbye.", "Xayr.", "До свидания."),
    # Call recording (sipd/recording.py, PBX_RECORDING_ANNOUNCE): to both phones.
    "call-recorded": _p(None, "This call is recorded.", "Bu qo'ng'iroq yozib olinmoqda.",
                        "Этот звонок записывается."),
    # The echo test, *43 (sipd/apps/echo.py).
    "demo-echotest": _p(
        "demo-echotest",
        "This is the echo test. What you say will be played back to you. Press pound to end.",
        "Bu aks-sado sinovi. Aytganlaringiz sizga qaytarib eshittiriladi. Tugatish uchun"
        " panjara tugmasini bosing.",
        "Это эхо-тест. Всё, что вы скажете, прозвучит снова. Чтобы закончить, нажмите решётку.",
    ),
    "demo-echodone": _p("demo-echodone", "The echo test is done.",
                        "Aks-sado sinovi tugadi.", "Эхо-тест завершён."),
    **{
        f"digits/{d}": _p(f"digits/{d}", _DIGITS_EN[d], _DIGITS_UZ[d], _DIGITS_RU[d])
        for d in range(10)
    },
}


def _settings(settings: Settings | None) -> Settings:
    return settings if settings is not None else load_settings()


def _check(name: str, language: str) -> None:
    if name not in PROMPTS:
        raise KeyError(name)
    if language not in LANGUAGES:
        raise KeyError(f"{name}: language {language!r}")


def upload_path(name: str, language: str = "en", settings: Settings | None = None) -> Path:
    """Where an admin's recording of `name` lives (it need not exist)."""
    _check(name, language)
    return Path(_settings(settings).sounds_dir) / language / f"{name}.wav"


def built_path(name: str, language: str = "en", settings: Settings | None = None) -> Path:
    _check(name, language)
    return Path(_settings(settings).prompts_dir) / language / f"{name}.wav"


def path(name: str, language: str = "en", settings: Settings | None = None) -> Path:
    """The 8 kHz mono µ-law WAV to play for `name` in `language`: the admin's
    upload if there is one, else the built prompt. KeyError for an unknown name
    or language; "" as the language (a call nobody set one for) is English."""
    language = language or "en"
    settings = _settings(settings)
    upload = upload_path(name, language, settings)
    return upload if upload.is_file() else built_path(name, language, settings)


def number(digits: str, language: str = "en", settings: Settings | None = None) -> list[Path]:
    """`digits` ("1001") spoken digit by digit."""
    if not digits.isdigit() or not digits.isascii():
        raise ValueError(f"not a string of digits: {digits!r}")
    settings = _settings(settings)
    return [path(f"digits/{d}", language, settings) for d in digits]


def source(name: str, language: str) -> tuple[str, str]:
    """How a prompt is made: ("asterisk", recording name) or ("espeak", text)."""
    entry = PROMPTS[name]
    text = entry.get(language)
    if language == "en" and entry.get("asterisk"):
        return "asterisk", entry["asterisk"]
    if text is None:
        if not entry.get("asterisk"):
            raise PromptError(f"{name}: no {language} text and no recording")
        return "asterisk", entry["asterisk"]
    return "espeak", text


def table_hash(names: Iterable[str] | None = None) -> str:
    """A digest of what build() would produce (the table's sources and voices):
    the tests' prompt cache is keyed by it."""
    items = [(n, lang, source(n, lang), VOICES[lang], sounds.TARGET)
             for n in sorted(names or PROMPTS) for lang in LANGUAGES]
    return hashlib.sha256(json.dumps(items, ensure_ascii=False).encode()).hexdigest()[:16]


def _item_hash(name: str, language: str) -> str:
    kind, what = source(name, language)
    text = f"{kind}\0{what}\0{VOICES[language]}\0{' '.join(sounds.TARGET)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _espeak(text: str, language: str, wav: Path) -> None:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise PromptError("espeak-ng is not installed (apt-get install espeak-ng)")
    result = subprocess.run(
        [espeak, "-v", VOICES[language], "-s", "150", "-w", str(wav), text],
        capture_output=True, text=True, timeout=60, check=False,
    )
    if result.returncode != 0:
        raise PromptError(f"espeak-ng -v {VOICES[language]} failed: {result.stderr.strip()}")


def _build_one(name: str, language: str, target: Path) -> None:
    kind, what = source(name, language)
    if kind == "asterisk":
        recording = ASTERISK_SOUNDS / f"{what}.wav"
        if not recording.is_file():
            raise PromptError(
                f"{recording} is missing (apt-get install asterisk-core-sounds-en-wav)"
            )
        sounds.convert(recording, target)
        return
    with tempfile.TemporaryDirectory(prefix="pbx-prompt-") as scratch:
        spoken = Path(scratch) / "spoken.wav"
        _espeak(what, language, spoken)
        sounds.convert(spoken, target)


def _read_manifest(directory: Path) -> dict:
    try:
        return json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def build(force: bool = False, settings: Settings | None = None,
          languages: Iterable[str] = LANGUAGES, directory: Path | None = None) -> int:
    """Build every prompt under PBX_PROMPTS_DIR (or `directory`): the ones whose
    source changed since the last build, or all with `force`. Returns how many
    files were written. Errors (a tool or a recording missing) are PromptError."""
    directory = Path(directory or _settings(settings).prompts_dir)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {} if force else _read_manifest(directory)
    written = 0
    try:
        for language in languages:
            if language not in LANGUAGES:
                raise PromptError(f"unknown language {language!r} (one of {', '.join(LANGUAGES)})")
            for name in PROMPTS:
                key, digest = f"{language}/{name}", _item_hash(name, language)
                target = directory / language / f"{name}.wav"
                if manifest.get(key) == digest and target.is_file():
                    continue
                try:
                    _build_one(name, language, target)
                except sounds.SoundError as error:
                    raise PromptError(f"{key}: {error}") from None
                manifest[key] = digest
                written += 1
    finally:
        # What was built stays recorded even when a later prompt fails.
        temporary = directory / f".{MANIFEST}.tmp"
        temporary.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        os.replace(temporary, directory / MANIFEST)
    return written


def built_origin(name: str, language: str) -> str:
    """How the built prompt is made: "recorded" (Asterisk's) or "synthesised" (espeak-ng)."""
    return "recorded" if source(name, language)[0] == "asterisk" else "synthesised"


def origin(name: str, language: str, settings: Settings | None = None) -> str:
    """Where what plays for `name` in `language` comes from: "uploaded" (an admin's
    recording), "recorded", "synthesised", or "missing" (not built yet)."""
    settings = _settings(settings)
    if upload_path(name, language, settings).is_file():
        return "uploaded"
    if built_path(name, language, settings).is_file():
        return built_origin(name, language)
    return "missing"


def text(name: str, language: str) -> str:
    """What the prompt says in `language` ("" for one without words, a beep)."""
    entry = PROMPTS[name]
    return entry.get(language) or entry.get("en") or ""


def listing(settings: Settings | None = None) -> list[tuple[str, str, str, Path]]:
    """(name, language, "upload"|"built"|"missing", path) for `pbxctl prompts list`."""
    settings = _settings(settings)
    rows = []
    for name in PROMPTS:
        for language in LANGUAGES:
            upload = upload_path(name, language, settings)
            built = built_path(name, language, settings)
            if upload.is_file():
                rows.append((name, language, "upload", upload))
            else:
                rows.append((name, language, "built" if built.is_file() else "missing", built))
    return rows


def upload(name: str, language: str, data: bytes, filename: str = "upload.wav",
           settings: Settings | None = None) -> Path:
    """Replace prompt `name` in `language` with an admin's recording (converted)."""
    target = upload_path(name, language, settings)
    try:
        return sounds.convert_upload(data, target, filename)
    except sounds.SoundError as error:
        raise PromptError(str(error), error.kind) from None


def remove_upload(name: str, language: str, settings: Settings | None = None) -> bool:
    """Go back to the built prompt; False when there was no upload."""
    target = upload_path(name, language, settings)
    if target.is_file():
        target.unlink()
        return True
    return False

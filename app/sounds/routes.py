"""Sounds in the panel: the PBX's prompts (core/prompts.py) and its music on hold
(core/music.py), the same files sipd plays; the choice of music is a Setting
row sipd reads when a hold starts, so it needs no restart.

An upload is converted by core/sounds.py (sox) to the endpoint's format before it
replaces anything; a file sox cannot read is the form's error, in the admin's
language, and nothing changes. Each change is written to the audit log. Viewers
may look and listen; changes are for admins.
"""

from __future__ import annotations

import logging

from flask import abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required

from app.auth.forms import EmptyForm
from app.filters import can_change
from app.sounds import bp
from app.sounds.forms import MusicUploadForm, PromptUploadForm
from app.uploads import MB, limit_uploads, upload_error
from core import audit, music, prompts
from core.models import db

log = logging.getLogger("panel")

# The largest upload each form takes (app.config overrides). A prompt is a few
# seconds, but a WAV of it straight from a recorder (48 kHz stereo) is 200 KB/s.
PROMPT_MAX_BYTES = 10 * MB
# Music is minutes: an MP3 of a few MB, or a CD-quality WAV of 50 MB for five.
MUSIC_MAX_BYTES = 50 * MB

LANGUAGE_NAMES = {"en": _l("English"), "uz": _l("Uzbek"), "ru": _l("Russian")}


def _settings():
    return current_app.config["PBX_SETTINGS"]


def _admins_only() -> None:
    if not can_change():
        abort(403)


def _audit(action: str, target: str, detail: str = "") -> None:
    audit.record(current_user.username, action, target, request.remote_addr, detail)
    log.info("Panel: %s: %s %s%s", current_user.username, action, target,
             f" ({detail})" if detail else "")


# -- prompts ---------------------------------------------------------------------------------


def _prompt_or_404(language: str, name: str) -> tuple[str, str]:
    if name not in prompts.PROMPTS or language not in prompts.LANGUAGES:
        abort(404, description=_("There is no prompt %(name)s (%(language)s).", name=name,
                                 language=language))
    return name, language


@bp.route("/prompts")
@login_required
def prompt_list():
    settings = _settings()
    rows = [{"name": name,
             "cells": [{"language": language, "origin": prompts.origin(name, language, settings),
                        "text": prompts.text(name, language)}
                       for language in prompts.LANGUAGES]}
            for name in prompts.PROMPTS]
    uploaded = sum(cell["origin"] == "uploaded" for row in rows for cell in row["cells"])
    missing = sum(cell["origin"] == "missing" for row in rows for cell in row["cells"])
    return render_template("sounds/prompts.html", rows=rows, languages=prompts.LANGUAGES,
                           uploaded=uploaded, missing=missing, form=EmptyForm())


# The file comes from the prompts' table (a known name and language), never from the URL.
@bp.route("/prompts/<language>/<path:name>/audio")
@login_required
def prompt_audio(language: str, name: str):
    name, language = _prompt_or_404(language, name)
    settings = _settings()
    built = request.args.get("built") == "1"
    path = (prompts.built_path(name, language, settings) if built
            else prompts.path(name, language, settings))
    if not path.is_file():
        abort(404, description=_("The prompt %(name)s (%(language)s) is not built yet"
                                 " (pbxctl prompts build).", name=name, language=language))
    return send_file(path, mimetype="audio/wav", conditional=True,
                     download_name=f"{language}-{name.replace('/', '-')}.wav")


def _prompt_page(name: str, language: str, form: PromptUploadForm):
    settings = _settings()
    return render_template(
        "sounds/prompt.html", name=name, language=language,
        text=prompts.text(name, language),
        origin=prompts.origin(name, language, settings),
        built_origin=prompts.built_origin(name, language),
        built=prompts.built_path(name, language, settings).is_file(),
        form=form, revert_form=EmptyForm(formdata=None))


@bp.route("/prompts/<language>/<path:name>", methods=["GET", "POST"])
@login_required
def prompt(language: str, name: str):
    name, language = _prompt_or_404(language, name)
    if request.method == "POST":
        _admins_only()
    form = PromptUploadForm()
    if form.validate_on_submit():
        upload = form.file.data
        try:
            prompts.upload(name, language, upload.read(), upload.filename or "upload",
                           _settings())
        except prompts.PromptError as error:
            log.info("Panel: %s: upload for prompt %s/%s refused: %s", current_user.username,
                     language, name, error)
            form.file.errors = [upload_error(error)]
        else:
            with db.atomic():
                _audit("prompt.upload", f"{language}/{name}", upload.filename or "")
            flash(_("The prompt %(name)s (%(language)s) now plays your recording.", name=name,
                    language=str(LANGUAGE_NAMES[language])), "info")
            return redirect(url_for("sounds.prompt_list", _anchor=_anchor(name)))
    status = 400 if request.method == "POST" else 200
    return _prompt_page(name, language, form), status


@bp.route("/prompts/<language>/<path:name>/revert", methods=["POST"])
@login_required
def prompt_revert(language: str, name: str):
    _admins_only()
    name, language = _prompt_or_404(language, name)
    if not EmptyForm().validate_on_submit():
        abort(400)
    if prompts.remove_upload(name, language, _settings()):
        with db.atomic():
            _audit("prompt.revert", f"{language}/{name}")
        flash(_("The prompt %(name)s (%(language)s) is the built one again.", name=name,
                language=str(LANGUAGE_NAMES[language])), "info")
    else:
        flash(_("The prompt %(name)s (%(language)s) had no upload.", name=name,
                language=str(LANGUAGE_NAMES[language])), "info")
    return redirect(url_for("sounds.prompt_list", _anchor=_anchor(name)))


def _anchor(name: str) -> str:
    return "prompt-" + name.replace("/", "-")


bp.add_app_template_global(_anchor, "prompt_anchor")


# -- music on hold ---------------------------------------------------------------------------


def _music_or_404(name: str):
    try:
        return music.path_of(name, _settings())
    except music.MusicError:
        abort(404, description=_("There is no music %(name)s in the library.", name=name))


def _music_page(form: MusicUploadForm):
    return render_template("sounds/music.html", entries=music.library(_settings()), form=form,
                           action_form=EmptyForm(formdata=None),
                           default_file=_settings().moh_file)


@bp.route("/music", methods=["GET", "POST"])
@login_required
def music_library():
    if request.method == "POST":
        _admins_only()
    form = MusicUploadForm()
    if form.validate_on_submit():
        upload = form.file.data
        try:
            name = music.add(upload.read(), upload.filename or "music", _settings())
        except music.MusicError as error:
            log.info("Panel: %s: music upload refused: %s", current_user.username, error)
            form.file.errors = [upload_error(error)]
        else:
            with db.atomic():
                _audit("moh.upload", name, upload.filename or "")
            flash(_("%(name)s is in the library. Choose it to play it to held callers.",
                    name=name), "info")
            return redirect(url_for("sounds.music_library", _anchor=f"music-{name}"))
    return _music_page(form), 400 if request.method == "POST" else 200


def _too_large_page(error: str):
    """An upload over its form's limit (app/uploads.py): the same page, the file's error."""
    if request.endpoint == "sounds.prompt":
        name, language = _prompt_or_404(request.view_args["language"],
                                        request.view_args["name"])
        form = PromptUploadForm(formdata=None)
        form.file.errors = [error]
        return _prompt_page(name, language, form)
    form = MusicUploadForm(formdata=None)
    form.file.errors = [error]
    return _music_page(form)


limit_uploads(bp, {"sounds.prompt": ("SOUNDS_PROMPT_MAX_BYTES", PROMPT_MAX_BYTES),
                   "sounds.music_library": ("SOUNDS_MUSIC_MAX_BYTES", MUSIC_MAX_BYTES)},
              _too_large_page)


@bp.route("/music/<name>/audio")
@login_required
def music_audio(name: str):
    path = _music_or_404(name)
    if not path.is_file():
        abort(404, description=_("The file of %(name)s is missing: %(path)s.", name=name,
                                 path=str(path)))
    return send_file(path, mimetype="audio/wav", conditional=True,
                     download_name=f"{name}.wav")


@bp.route("/music/<name>/choose", methods=["POST"])
@login_required
def music_choose(name: str):
    _admins_only()
    _music_or_404(name)
    if not EmptyForm().validate_on_submit():
        abort(400)
    with db.atomic():
        music.choose(name, _settings())
        _audit("moh.choose", name)
    if name == music.DEFAULT:
        flash(_("Held callers hear the default music from the next hold on."), "info")
    else:
        flash(_("Held callers hear %(name)s from the next hold on.", name=name), "info")
    return redirect(url_for("sounds.music_library"))


@bp.route("/music/<name>/delete", methods=["POST"])
@login_required
def music_delete(name: str):
    _admins_only()
    _music_or_404(name)
    if name == music.DEFAULT:
        abort(400, description=_("The default music cannot be deleted."))
    if not EmptyForm().validate_on_submit():
        abort(400)
    with db.atomic():
        was_playing = music.delete(name, _settings())
        _audit("moh.delete", name, "was playing; the default plays now" if was_playing else "")
    if was_playing:
        flash(_("%(name)s deleted. It was playing on hold: held callers hear the default"
                " music now.", name=name), "info")
    else:
        flash(_("%(name)s deleted.", name=name), "info")
    return redirect(url_for("sounds.music_library"))

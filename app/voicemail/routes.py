"""Voicemail in the panel: the same core/voicemail.py operations as `pbxctl vm ...` and
`pbxctl ext voicemail`. Each change runs in one transaction with its audit row; an
AccountError from core is the form's error, in the admin's language. Viewers may
listen and download; deleting and the settings are for admins."""

from __future__ import annotations

import logging

from flask import abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from app.auth.forms import EmptyForm
from app.filters import can_change, sentence, translated
from app.uploads import MB, limit_uploads, upload_error
from app.voicemail import bp
from app.voicemail.forms import GreetingForm, MailboxForm
from core import audit, sounds, voicemail
from core.accounts import AccountError, get_extension
from core.models import db

log = logging.getLogger("panel")

# A greeting is seconds: a WAV of a minute at CD quality is 10 MB.
GREETING_MAX_BYTES = 10 * MB

# The extension's page shows its mailbox (templates/extensions/show.html).
bp.add_app_template_global(voicemail.mailbox_of, "mailbox_of")
bp.add_app_template_global(voicemail.counts, "mailbox_counts")


def _settings():
    return current_app.config["PBX_SETTINGS"]


def _audit(action: str, target: str, detail: str = "") -> None:
    audit.record(current_user.username, action, target, request.remote_addr, detail)
    log.info("Panel: %s: %s %s%s", current_user.username, action, target,
             f" ({detail})" if detail else "")


def _message_or_404(message_id: int):
    try:
        return voicemail.get_message(message_id)
    except AccountError:
        abort(404, description=_("There is no voicemail message %(id)s.", id=message_id))


@bp.route("/")
@login_required
def index():
    number = (request.args.get("mailbox") or "").strip() or None
    if number is not None and voicemail.mailbox_of(number) is None:
        abort(404, description=_("Extension %(number)s has no mailbox.", number=number))
    boxes = list(voicemail.mailboxes())
    counts = {box.extension.number: voicemail.counts(box.extension.number) for box in boxes}
    return render_template("voicemail/index.html", messages=list(voicemail.messages(number)),
                           mailboxes=boxes, counts=counts, selected=number, form=EmptyForm())


@bp.route("/<int:message_id>/audio")
@login_required
def audio(message_id: int):
    message = _message_or_404(message_id)
    path = voicemail.message_file(message, _settings())
    if not path.is_file():
        abort(404, description=_("The recording of message %(id)s is missing.", id=message_id))
    download = request.args.get("download") == "1"
    return send_file(path, mimetype="audio/wav", as_attachment=download,
                     download_name=voicemail.export_name(message), conditional=True)


@bp.route("/<int:message_id>/delete", methods=["POST"])
@login_required
def delete(message_id: int):
    if not can_change():
        abort(403)
    form = EmptyForm()
    if not form.validate_on_submit():
        abort(400)
    message = _message_or_404(message_id)
    number = message.mailbox.extension.number
    with db.atomic():
        voicemail.delete_message(message.id, _settings())
        _audit("voicemail.delete", number,
               f"message {message.id} from {message.caller or 'unknown'}")
    flash(_("Message %(id)s of mailbox %(number)s deleted.", id=message.id, number=number),
          "info")
    if request.form.get("next_mailbox"):
        return redirect(url_for("voicemail.index", mailbox=number))
    return redirect(url_for("voicemail.index"))


def _extension_or_404(number: str):
    if not can_change():
        abort(403)
    try:
        return get_extension(number)
    except AccountError:
        abort(404, description=_("There is no extension %(number)s.", number=number))


def _mailbox_page(extension, box, form=None, greeting_form=None, status=200):
    return render_template("voicemail/mailbox.html", extension=extension, mailbox=box,
                           form=form or MailboxForm(obj=box, formdata=None),
                           greeting_form=greeting_form or GreetingForm(formdata=None)), status


def _too_large_page(error: str):
    """A greeting over the limit (app/uploads.py): the mailbox page with the upload's error."""
    extension = _extension_or_404(request.view_args["number"])
    form = GreetingForm(formdata=None)
    form.file.errors = [error]
    return _mailbox_page(extension, voicemail.mailbox_of(extension.number),
                         greeting_form=form)


limit_uploads(bp, {"voicemail.greeting": ("VOICEMAIL_GREETING_MAX_BYTES", GREETING_MAX_BYTES)},
              _too_large_page)


@bp.route("/mailbox/<number>/greeting", methods=["POST"])
@login_required
def greeting(number: str):
    """Issue 13: a greeting "the owner records by phone or the admin uploads"."""
    extension = _extension_or_404(number)
    box = voicemail.mailbox_of(extension.number)
    if box is None:
        abort(404, description=_("Extension %(number)s has no mailbox.", number=number))
    form = GreetingForm()
    if form.validate_on_submit():
        upload = form.file.data
        try:
            with db.atomic():
                voicemail.upload_greeting(extension.number, upload.read(),
                                          upload.filename or "upload", _settings())
                _audit("voicemail.greeting", extension.number,
                       f"uploaded {upload.filename or ''}".strip())
        except sounds.SoundError as error:
            log.info("Panel: %s: greeting for %s refused: %s", current_user.username,
                     extension.number, error)
            form.file.errors = [upload_error(error)]
        else:
            flash(_("Callers of %(number)s's mailbox now hear your greeting.",
                    number=extension.number), "info")
            return redirect(url_for("voicemail.mailbox", number=extension.number))
    return _mailbox_page(extension, box, greeting_form=form, status=400)


@bp.route("/mailbox/<number>/greeting/delete", methods=["POST"])
@login_required
def greeting_delete(number: str):
    extension = _extension_or_404(number)
    if not EmptyForm().validate_on_submit():
        abort(400)
    with db.atomic():
        removed = voicemail.delete_greeting(extension.number, _settings())
        if removed:
            _audit("voicemail.greeting", extension.number, "standard greeting")
    if removed:
        flash(_("Callers of %(number)s's mailbox hear the standard greeting again.",
                number=extension.number), "info")
    return redirect(url_for("voicemail.mailbox", number=extension.number))


@bp.route("/mailbox/<number>/greeting.wav")
@login_required
def greeting_audio(number: str):
    extension = _extension_or_404(number)
    box = voicemail.mailbox_of(extension.number)
    path = voicemail.greeting_file(box, _settings()) if box is not None else None
    if path is None or not path.is_file():
        abort(404, description=_("Extension %(number)s has no greeting of its own.",
                                 number=number))
    return send_file(path, mimetype="audio/wav", conditional=True)


@bp.route("/mailbox/<number>", methods=["GET", "POST"])
@login_required
def mailbox(number: str):
    extension = _extension_or_404(number)
    box = voicemail.mailbox_of(extension.number)
    form = MailboxForm(obj=box) if request.method == "GET" and box else MailboxForm()
    if request.method == "GET" and box is None:
        form.enabled.data = False
    generated = None
    if form.validate_on_submit():
        try:
            with db.atomic():
                box, generated = voicemail.set_voicemail(
                    extension.number, bool(form.enabled.data), pin=form.pin.data or None,
                    email=form.email.data or "", language=form.language.data or "")
                detail = ", ".join(filter(None, [
                    "on" if box.enabled else "off", "PIN set" if form.pin.data else
                    "PIN generated" if generated else "", f"e-mail {box.email or 'none'}",
                    f"language {box.language or 'default'}"]))
                _audit("extension.voicemail", extension.number, detail)
        except AccountError as error:
            form.form_errors.append(sentence(translated(error.args[0])))
        else:
            if generated:
                flash(_("Voicemail of %(number)s is on. Its PIN, shown once: %(pin)s",
                        number=extension.number, pin=generated), "info")
            else:
                flash(_("Voicemail settings of %(number)s saved.", number=extension.number),
                      "info")
            return redirect(url_for("extensions.show", number=extension.number))
    return _mailbox_page(extension, box, form=form)[0]

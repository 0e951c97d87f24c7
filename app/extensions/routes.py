import logging
import time

from flask import (
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required

from app.auth.forms import EmptyForm
from app.calls.history import Page, page_number
from app.extensions import bp, diagnosis, phone_setup
from app.extensions.forms import EditForm, ExtensionForm, PasswordForm, SearchForm
from app.filters import sentence, translated
from app.names import leading_to, names_of
from app.status import (
    extensions_in_order,
    live_bindings_by_extension,
    live_bindings_of,
    registered_count,
)
from core import audit, outbound, recording
from core.accounts import (
    AccountError,
    create_extension,
    delete_extension,
    set_password,
    update_extension,
)
from core.credentials import offered_algorithms
from core.models import AuthAttempt, Extension, db

log = logging.getLogger("panel")

PAGE_SIZE = 100


def _settings():
    return current_app.config["PBX_SETTINGS"]


def _extension_or_404(number: str) -> Extension:
    extension = Extension.by_number(number)
    if extension is None:
        abort(404, description=_("There is no extension %(number)s.", number=number))
    return extension


def _audit(action: str, number: str, detail: str = "") -> None:
    """Call inside the change's transaction: the row and the change go together."""
    audit.record(current_user.username, f"extension.{action}", number, request.remote_addr,
                 detail)
    log.info("Panel: %s: extension.%s %s%s", current_user.username, action, number,
             f" ({detail})" if detail else "")


def _changes(extension: Extension, name: str, enabled: bool, max_calls: int) -> str:
    changes = []
    if name != extension.name:
        changes.append(f"name {extension.name!r} -> {name!r}")
    if enabled != extension.enabled:
        changes.append("enabled" if enabled else "disabled")
    if max_calls != extension.max_calls:
        changes.append(f"call limit {extension.max_calls} -> {max_calls}")
    return ", ".join(changes) or "no change"


def _show_password(extension: Extension, password: str, generated: bool, created: bool):
    """The one page that ever shows this password: rendered in the POST response
    itself (no redirect, nothing kept in the session) and never cached."""
    response = make_response(render_template(
        "extensions/password_shown.html",
        extension=extension, password=password, generated=generated, created=created,
        **phone_setup.context(extension, password),
    ))
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@bp.route("/")
@login_required
def index():
    """One page of the extensions (PAGE_SIZE), those matching the search if there is one,
    with the live bindings of that page. The whole list of 100,000 was 32 MB (probe
    finding 9, docs/security.md)."""
    now = time.time()
    form = SearchForm(formdata=request.args)
    status = 200
    if not form.validate():
        form.q.data, status = "", 400  # shown with its error; the list unfiltered
    query = extensions_in_order()
    if form.q.data:
        # LIKE, its wildcards in the search escaped by peewee; ASCII case-insensitive.
        query = query.where(Extension.number.contains(form.q.data)
                            | Extension.name.contains(form.q.data))
    page = Page(query, page_number(request.args.get("page")), PAGE_SIZE)
    return render_template(
        "extensions/index.html",
        form=form,
        page=page,
        search={"q": form.q.data} if form.q.data else {},
        total=Extension.select().count(),
        registered=registered_count(now),
        bindings=live_bindings_by_extension(now, [e.id for e in page.rows]),
        now=now,
    ), status


@bp.route("/new", methods=["GET", "POST"])
@login_required
def create():
    form = ExtensionForm()
    if form.validate_on_submit():
        try:
            with db.atomic():
                extension, password, generated = create_extension(
                    form.number.data, _settings().realm, name=form.name.data or "",
                    password=form.chosen_password, generate=form.mode.data == "generate",
                    enabled=form.enabled.data,
                )
                _audit("create", extension.number, ", ".join(filter(None, [
                    f"name {extension.name!r}" if extension.name else "",
                    "generated password" if generated else "password set",
                    "" if extension.enabled else "disabled",
                ])))
        except AccountError as error:
            form.form_errors.append(sentence(translated(error.args[0])))
        else:
            return _show_password(extension, password, generated, created=True)
    return render_template("extensions/new.html", form=form)


@bp.route("/<number>")
@login_required
def show(number: str):
    extension = _extension_or_404(number)
    now = time.time()
    bindings = list(live_bindings_of(extension, now))
    attempts = list(AuthAttempt.recent_for(extension.number, limit=25))
    return render_template(
        "extensions/show.html",
        extension=extension,
        bindings=bindings,
        attempts=attempts,
        unanswered=diagnosis.unanswered(attempts, bindings),
        offered=offered_algorithms(extension.digest_algorithms, _settings().digest_algorithms),
        realm=_settings().realm,
        form=EmptyForm(),
        names=names_of([extension.forward_always, extension.forward_busy,
                        extension.forward_no_answer, extension.forward_unavailable]),
        now=now,
    )


@bp.route("/<number>/edit", methods=["GET", "POST"])
@login_required
def edit(number: str):
    extension = _extension_or_404(number)
    form = EditForm(obj=extension)
    if form.validate_on_submit():
        try:
            with db.atomic():
                max_calls = form.max_calls.data or extension.max_calls
                detail = _changes(extension, (form.name.data or "").strip(), form.enabled.data,
                                  max_calls)
                update_extension(extension.number, name=form.name.data or "",
                                 enabled=form.enabled.data, max_calls=max_calls)
                _audit("edit", extension.number, detail)
                permission = form.outbound_permission.data
                if permission and permission != extension.outbound_permission:
                    outbound.set_permission(extension.number, permission)
                    _audit("permit", extension.number, permission)
        except AccountError as error:
            form.form_errors.append(sentence(translated(error.args[0])))
        else:
            if extension.enabled and not form.enabled.data:
                flash(_("Extension %(number)s is disabled; its registrations were removed.",
                        number=extension.number),
                      "info")
            else:
                flash(_("Extension %(number)s saved.", number=extension.number), "success")
            return redirect(url_for(".show", number=extension.number))
    return render_template("extensions/edit.html", form=form, extension=extension)


@bp.route("/<number>/disable", methods=["POST"])
@login_required
def disable(number: str):
    return _set_enabled(number, False)


@bp.route("/<number>/enable", methods=["POST"])
@login_required
def enable(number: str):
    return _set_enabled(number, True)


def _set_enabled(number: str, enabled: bool):
    extension = _extension_or_404(number)
    if EmptyForm().validate_on_submit():
        with db.atomic():
            update_extension(extension.number, enabled=enabled)
            _audit("enable" if enabled else "disable", extension.number)
        if enabled:
            flash(_("Extension %(number)s is enabled.", number=extension.number), "success")
        else:
            flash(_("Extension %(number)s is disabled; its registrations were removed.",
                        number=extension.number),
                  "info")
    return redirect(url_for(".show", number=extension.number))


@bp.route("/<number>/record-on", methods=["POST"])
@login_required
def record_on(number: str):
    return _set_record(number, True)


@bp.route("/<number>/record-off", methods=["POST"])
@login_required
def record_off(number: str):
    return _set_record(number, False)


def _set_record(number: str, on: bool):
    """core/recording.py's switch, as `pbxctl ext record NUMBER on|off`: sipd reads it
    at each answer, so the next call is recorded (or not)."""
    extension = _extension_or_404(number)
    if not EmptyForm().validate_on_submit():
        return redirect(url_for(".show", number=extension.number))
    if extension.record_calls != on:
        with db.atomic():
            recording.set_record(extension.number, on)
            _audit("record", extension.number, "on" if on else "off")
    if on and _settings().recording_days:
        flash(_("The calls of %(number)s are recorded from the next one; each recording is "
                "kept %(days)s days.", number=extension.number, days=_settings().recording_days),
              "info")
    elif on:
        flash(_("The calls of %(number)s are recorded from the next one.",
                number=extension.number), "info")
    else:
        flash(_("The calls of %(number)s are no longer recorded.", number=extension.number),
              "success")
    return redirect(url_for(".show", number=extension.number))


@bp.route("/<number>/password", methods=["GET", "POST"])
@login_required
def password(number: str):
    extension = _extension_or_404(number)
    form = PasswordForm(extension.number)
    if form.validate_on_submit():
        try:
            with db.atomic():
                extension, new_password, generated = set_password(
                    extension.number, _settings().realm, password=form.chosen_password,
                    generate=form.mode.data == "generate",
                )
                _audit("password", extension.number,
                       "generated password" if generated else "password set")
        except AccountError as error:
            form.form_errors.append(sentence(translated(error.args[0])))
        else:
            return _show_password(extension, new_password, generated, created=False)
    return render_template("extensions/password.html", form=form, extension=extension)


@bp.route("/<number>/delete", methods=["GET", "POST"])
@login_required
def delete(number: str):
    extension = _extension_or_404(number)
    form = EmptyForm()
    if form.validate_on_submit():
        try:
            with db.atomic():
                changed = delete_extension(extension.number)
                _audit("delete", extension.number, "; ".join(filter(None, [
                    f"name {extension.name!r}" if extension.name else "",
                    ", ".join(changed)])))
        except AccountError as error:
            # The only member of a ring group: the group would ring nobody.
            form.form_errors.append(sentence(translated(error.args[0])))
        else:
            from core.voicemail import delete_files  # its mailbox's recordings

            delete_files(extension.number, _settings())
            flash(_("Extension %(number)s deleted.", number=extension.number), "success")
            if changed:
                flash(_("Changed with it: %(what)s.",
                        what=", ".join(translated(text) for text in changed)), "info")
            return redirect(url_for(".index"))
    forwarders, fallbacks = leading_to(extension.number)
    return render_template("extensions/delete.html", form=form, extension=extension,
                           forwarders=[e for e in forwarders if e.id != extension.id],
                           fallbacks=fallbacks)

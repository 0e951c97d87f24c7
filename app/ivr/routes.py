"""IVR menus (/ivr/) and business hours (/hours/) in the panel: the same core/ivr.py
operations as `pbxctl ivr ...` and `pbxctl hours ...`.

Each change runs in one transaction with its audit row. What core refuses is the
form's error, in the admin's language: a destination, a number or the recording
by its field, anything else above the form; nothing is saved then. Deleting what
something still leads to is refused as pbxctl refuses it, naming each user.
Viewers see the lists and get 403 on the pages that would change them.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from flask import abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from app.auth.forms import EmptyForm
from app.filters import can_change, sentence, translated
from app.i18n import LANGUAGES, local_strftime
from app.ivr import bp
from app.ivr.forms import KEYS, EditHoursForm, EditIvrForm, HoursForm, IvrForm, days, lines
from app.names import names_of
from app.uploads import MB, limit_uploads
from core import audit, destinations, hours, ivr
from core.accounts import AccountError
from core.models import db

log = logging.getLogger("panel")

# An uploaded recording: a few minutes of CD-quality WAV, far beyond a menu's words
# (app.config IVR_PROMPT_MAX_BYTES overrides). Larger: the form's error (app/uploads.py).
MAX_PROMPT_BYTES = 32 * MB
PROMPT_REFUSED = "the menu prompt is refused: %(reason)s"  # core/ivr.py's message


def _settings():
    return current_app.config["PBX_SETTINGS"]


def _admins_only() -> None:
    if not can_change():
        abort(403)


def _audit(action: str, target: str, detail: str = "") -> None:
    """Call inside the change's transaction: the row and the change go together."""
    audit.record(current_user.username, action, target, request.remote_addr, detail)
    log.info(
        "Panel: %s: %s %s%s",
        current_user.username,
        action,
        target,
        f" ({detail})" if detail else "",
    )


def _error(error: AccountError) -> str:
    return sentence(translated(error.args[0]))


def _checked(fields, check) -> bool:
    """Run core's `check` on each filled field; its refusal is that field's error."""
    good = True
    for field in fields:
        if field.data:
            try:
                check(field.data)
            except AccountError as error:
                field.errors.append(_error(error))
                good = False
    return good


def _where_it_leads(form, own: str) -> bool:
    """The number and every destination of the form, each checked as core checks it."""
    leads = _checked(form.destination_fields(), lambda text: ivr.check_destination(text, own))
    return _checked([form.number], lambda number: ivr.check_number(number, own)) and leads


def _menu_or_404(name: str):
    try:
        return ivr.get_ivr(name)
    except AccountError:
        abort(404, description=_("There is no IVR menu %(name)s.", name=name))


def _schedule_or_404(name: str):
    try:
        return ivr.get_schedule(name)
    except AccountError:
        abort(404, description=_("There are no business hours %(name)s.", name=name))


def _numbers(texts) -> dict[str, str]:
    return names_of(t for t in texts if t and destinations.NUMBER_RE.match(t))


# -- menus --------------------------------------------------------------------------------


@bp.route("/ivr/")
@login_required
def index():
    menus = ivr.list_ivrs()
    options = {menu.id: ivr.options_of(menu) for menu in menus}
    texts = [t for m in menus for t in (m.on_timeout, m.on_invalid, *options[m.id].values())]
    return render_template(
        "ivr/index.html", menus=menus, options=options, names=_numbers(texts), languages=LANGUAGES
    )


@bp.route("/ivr/<name>/prompt.wav")
@login_required
def prompt(name: str):
    path = ivr.prompt_file(_menu_or_404(name), _settings())
    if not path.is_file():
        abort(404, description=_("The recording of this menu is missing."))
    return send_file(path, mimetype="audio/wav", conditional=True)


def _prompt_upload(form, required: bool) -> tuple[bytes, str] | None:
    upload = form.prompt.data
    if upload is None or not getattr(upload, "filename", ""):
        if required:
            form.prompt.errors.append(_("Choose the menu's recording, a WAV file."))
        return None
    return upload.read(), upload.filename


def _menu_error(form, error: AccountError) -> None:
    if getattr(error.args[0], "message", None) == PROMPT_REFUSED:
        form.prompt.errors.append(_error(error))
    else:
        form.form_errors.append(_error(error))


def _menu_values(form) -> dict:
    return {
        "options": form.options(),
        "direct_dial": form.direct_dial.data,
        "timeout": form.timeout.data,
        "repeats": form.repeats.data,
        "on_timeout": form.on_timeout.data,
        "on_invalid": form.on_invalid.data,
        "number": form.number.data,
        "language": form.language.data,
    }


@bp.route("/ivr/new", methods=["GET", "POST"])
@login_required
def create():
    _admins_only()
    form = IvrForm()
    if request.method == "GET":
        form.fill_keys({})
    elif form.validate_on_submit():
        own = f"{destinations.IVR}{form.name.data.lower()}"
        leads = _where_it_leads(form, own)
        upload = _prompt_upload(form, required=True)
        if leads and upload is not None:
            try:
                with db.atomic():
                    menu = ivr.create_ivr(
                        form.name.data, upload, settings=_settings(), **_menu_values(form)
                    )
                    _audit("ivr.create", menu.name, ivr.describe_ivr(menu))
            except AccountError as error:
                _menu_error(form, error)
            else:
                flash(
                    _("IVR menu %(name)s created: calls reach it as ivr:%(name)s.", name=menu.name),
                    "success",
                )
                return redirect(url_for(".index"))
    return render_template("ivr/form.html", form=form, menu=None, keys=KEYS)


@bp.route("/ivr/<name>/edit", methods=["GET", "POST"])
@login_required
def edit(name: str):
    _admins_only()
    menu = _menu_or_404(name)
    form = EditIvrForm(obj=menu if request.method == "GET" else None)
    if request.method == "GET":
        form.fill_keys(ivr.options_of(menu))
    elif form.validate_on_submit():
        own = f"{destinations.IVR}{menu.name}"
        upload = _prompt_upload(form, required=False)
        if _where_it_leads(form, own):
            before = ivr.describe_ivr(menu)
            try:
                with db.atomic():
                    menu = ivr.update_ivr(
                        menu.name, prompt=upload, settings=_settings(), **_menu_values(form)
                    )
                    after = ivr.describe_ivr(menu)
                    _audit(
                        "ivr.edit",
                        menu.name,
                        "; ".join(
                            filter(
                                None,
                                [
                                    "new recording" if upload else "",
                                    f"{before} -> {after}" if after != before else "",
                                ],
                            )
                        )
                        or "no change",
                    )
            except AccountError as error:
                _menu_error(form, error)
            else:
                flash(_("IVR menu %(name)s saved.", name=menu.name), "success")
                return redirect(url_for(".index"))
    return render_template("ivr/form.html", form=form, menu=menu, keys=KEYS)


def _too_large_page(error: str):
    """A recording over the limit (app/uploads.py): the form as a GET shows it (the body
    with what was typed was never read), the recording's error on it."""
    name = request.view_args.get("name")
    menu = _menu_or_404(name) if name is not None else None
    form = (EditIvrForm if menu else IvrForm)(obj=menu, formdata=None)
    form.fill_keys(ivr.options_of(menu) if menu else {})
    form.prompt.errors = [error]
    return render_template("ivr/form.html", form=form, menu=menu, keys=KEYS)


limit_uploads(bp, {endpoint: ("IVR_PROMPT_MAX_BYTES", MAX_PROMPT_BYTES)
                   for endpoint in ("ivr.create", "ivr.edit")}, _too_large_page)


@bp.route("/ivr/<name>/delete", methods=["GET", "POST"])
@login_required
def delete(name: str):
    _admins_only()
    menu = _menu_or_404(name)
    return _delete(
        "ivr",
        menu,
        lambda: ivr.delete_ivr(menu.name, _settings()),
        f"number {menu.number or 'none'}, prompt {menu.prompt}",
        _("IVR menu %(name)s deleted.", name=menu.name),
        ".index",
    )


def _delete(kind: str, row, remove, detail: str, done: str, back: str):
    """The delete page of a menu or business hours (`kind`: ivr, hours): refused, naming
    each, while something leads there (core's used_by, as pbxctl's rm refuses)."""
    form = EmptyForm()
    if form.validate_on_submit():
        try:
            with db.atomic():
                remove()
                _audit(f"{kind}.delete", row.name, detail)
        except AccountError as error:
            flash(_error(error), "error")
        else:
            flash(done, "success")
            return redirect(url_for(back))
    users = ivr.used_by(f"{kind}:{row.name}", but=row)
    return render_template(
        "ivr/delete.html", form=form, what=kind, name=row.name, users=users, cancel=url_for(back)
    )


# -- business hours -----------------------------------------------------------------------


def _zone_of(schedule) -> str:
    return schedule.timezone or _settings().timezone


def _local_time(zone: str, now: float) -> str:
    """The wall clock in `zone` ("Fri 14:05"), which is what the rules are read against."""
    return local_strftime("%a %H:%M", datetime.fromtimestamp(now, hours.zone(zone)).timetuple())


@bp.route("/hours/")
@login_required
def hours_index():
    schedules = ivr.list_schedules()
    now = time.time()
    state = {
        s.id: {
            "open": ivr.is_open(s, now, _settings()),
            "rules": ivr.rules_of(s),
            "holidays": ivr.holidays_of(s),
            "zone": _zone_of(s),
            "clock": _local_time(_zone_of(s), now),
        }
        for s in schedules
    }
    texts = [t for s in schedules for t in (s.in_destination, s.out_destination)]
    return render_template(
        "ivr/hours.html",
        schedules=schedules,
        state=state,
        names=_numbers(texts),
        server_zone=_settings().timezone,
    )


def _hours_values(form) -> dict:
    return {
        "rules": lines(form.rules.data),
        "holidays": days(form.holidays.data),
        "in_destination": form.in_destination.data,
        "out_destination": form.out_destination.data,
        "number": form.number.data,
        "timezone": form.timezone.data,
    }


@bp.route("/hours/new", methods=["GET", "POST"])
@login_required
def hours_create():
    _admins_only()
    form = HoursForm()
    if form.validate_on_submit() and _where_it_leads(
        form, f"{destinations.HOURS}{form.name.data.lower()}"
    ):
        try:
            with db.atomic():
                schedule = ivr.create_schedule(form.name.data, **_hours_values(form))
                _audit("hours.create", schedule.name, ivr.describe_schedule(schedule, _settings()))
        except AccountError as error:
            form.form_errors.append(_error(error))
        else:
            flash(
                _(
                    "Business hours %(name)s created: calls reach them as hours:%(name)s.",
                    name=schedule.name,
                ),
                "success",
            )
            return redirect(url_for(".hours_index"))
    return render_template(
        "ivr/hours_form.html", form=form, schedule=None, server_zone=_settings().timezone
    )


@bp.route("/hours/<name>/edit", methods=["GET", "POST"])
@login_required
def hours_edit(name: str):
    _admins_only()
    schedule = _schedule_or_404(name)
    if request.method == "GET":
        # Not obj=schedule: its `rules` and `holidays` backrefs would fill the text areas.
        form = EditHoursForm(
            data={
                "number": schedule.number or "",
                "timezone": schedule.timezone,
                "in_destination": schedule.in_destination,
                "out_destination": schedule.out_destination,
                "rules": "\n".join(ivr.rules_of(schedule)),
                "holidays": "\n".join(ivr.holidays_of(schedule)),
            }
        )
    else:
        form = EditHoursForm()
    if form.validate_on_submit() and _where_it_leads(form, f"{destinations.HOURS}{schedule.name}"):
        before = ivr.describe_schedule(schedule, _settings())
        try:
            with db.atomic():
                schedule = ivr.update_schedule(schedule.name, **_hours_values(form))
                after = ivr.describe_schedule(schedule, _settings())
                _audit(
                    "hours.edit",
                    schedule.name,
                    f"{before} -> {after}" if after != before else "no change",
                )
        except AccountError as error:
            form.form_errors.append(_error(error))
        else:
            flash(_("Business hours %(name)s saved.", name=schedule.name), "success")
            return redirect(url_for(".hours_index"))
    return render_template(
        "ivr/hours_form.html", form=form, schedule=schedule, server_zone=_settings().timezone
    )


@bp.route("/hours/<name>/delete", methods=["GET", "POST"])
@login_required
def hours_delete(name: str):
    _admins_only()
    schedule = _schedule_or_404(name)
    return _delete(
        "hours",
        schedule,
        lambda: ivr.delete_schedule(schedule.name),
        f"in {schedule.in_destination}, out {schedule.out_destination}",
        _("Business hours %(name)s deleted.", name=schedule.name),
        ".hours_index",
    )

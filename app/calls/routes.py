import logging
import time

from flask import (
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user, login_required

from app.auth.forms import EmptyForm
from app.calls import bp
from app.calls.forms import HistoryFilter
from app.calls.history import Page, csv_lines, filtered, page_number
from app.filters import can_change, format_duration, format_time, format_utc
from core import audit, control
from core.models import Call, Extension, db

log = logging.getLogger("panel")


def _filter_form() -> HistoryFilter:
    return HistoryFilter(formdata=request.args)


def _filtered(form: HistoryFilter):
    return filtered(form.extension.data or "", form.since.data, form.until.data,
                    form.disposition.data or "")


@bp.route("/")
@login_required
def history():
    form = _filter_form()
    if not form.validate():
        # A filter we cannot apply shows nothing rather than everything.
        return render_template("calls/history.html", form=form, page=None, filters={}), 400
    page = Page(_filtered(form), page_number(request.args.get("page")),
                current_app.config["PANEL_PAGE_SIZE"])
    return render_template("calls/history.html", form=form, page=page, filters=form.args(),
                           now=time.time())


@bp.route("/export.csv")
@login_required
def export():
    form = _filter_form()
    if not form.validate():
        errors = "; ".join(f"{form[name].label.text}: {' '.join(messages)}"
                           for name, messages in form.errors.items())
        abort(400, description=_("The filter is not valid: %(errors)s", errors=errors))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Response(
        stream_with_context(csv_lines(_filtered(form))),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="calls-{stamp}.csv"'},
    )


def _live_calls():
    return list(Call.active())


def _names(calls) -> dict[str, str]:
    """{number: the panel's name of that extension} for the parties of `calls`."""
    numbers = {number for call in calls for number in (call.caller, call.callee)}
    if not numbers:
        return {}
    query = Extension.select(Extension.number, Extension.name).where(
        Extension.number.in_(numbers) & (Extension.name != ""))
    return {extension.number: extension.name for extension in query}


def _party_names(call: Call, names: dict[str, str]) -> tuple[str, str]:
    # The panel's name as it is now; for a caller that is no extension (a trunk),
    # the name sipd recorded for it.
    return names.get(call.caller) or call.caller_name, names.get(call.callee, "")


def _as_json(call: Call, now: float, names: dict[str, str]) -> dict:
    answered = call.answered_at is not None
    caller_name, callee_name = _party_names(call, names)
    return {
        "id": call.id,
        "caller": call.caller,
        "caller_name": caller_name,
        "callee": call.callee,
        "callee_name": callee_name,
        "state": call.state,
        "started_at": call.started_at,
        # Formatted here, in the server's zone like every other time in the panel.
        "started": format_time(call.started_at),
        "started_utc": format_utc(call.started_at),
        "answered_at": call.answered_at,
        "duration": format_duration(now - (call.answered_at if answered else call.started_at)),
        "caller_source": call.caller_source,
        "caller_media": call.caller_media,
        "callee_media": call.callee_media,
        "codec": call.codec,
        "hangup_url": url_for(".hangup", call_id=call.id),
    }


@bp.route("/active")
@login_required
def active():
    calls = _live_calls()
    return render_template("calls/active.html", calls=calls, names=_names(calls),
                           now=time.time())


@bp.route("/active.json")
def active_json():
    # JSON, not the login page, when the session is gone: the page's script says so.
    if not current_user.is_authenticated:
        return jsonify(error=_("Your session has expired. Please log in again.")), 401
    now = time.time()
    calls = _live_calls()
    names = _names(calls)
    return jsonify(now=now, count=len(calls), calls=[_as_json(call, now, names) for call in calls],
                   summary=ngettext("%(num)s live call", "%(num)s live calls", len(calls)))


# An id past SQLite's 64-bit integers would raise OverflowError in the query: a 404.
# GET asks "Hang up this call?" (a page, so it works without JavaScript and under
# the panel's CSP); its button POSTs here.
@bp.route(f"/<int(max={2**63 - 1}):call_id>/hangup", methods=["GET", "POST"])
@login_required
def hangup(call_id: int):
    call = Call.get_or_none(Call.id == call_id)
    if call is None:
        abort(404, description=_("There is no such call."))
    who = f"{call.caller} → {call.callee}"
    if call.ended_at is not None:
        flash(_("The call %(who)s has already ended.", who=who), "info")
        return redirect(url_for(".active"))
    if request.method == "GET":
        return _confirm_hangup(call)
    if not EmptyForm().validate_on_submit():
        return redirect(url_for(".active"))
    settings = current_app.config["PBX_SETTINGS"]
    try:
        # By row id: a Call-ID may belong to more than one call (RFC 3261 §12).
        control.send(settings.control_socket, {"command": "hangup", "id": call.id})
    except control.ControlError as error:
        log.warning("Panel: %s could not hang up call %d: %s", current_user.username,
                    call.id, error)
        flash(_("Could not hang up the call %(who)s: %(error)s", who=who, error=error), "error")
        return redirect(url_for(".active"))
    with db.atomic():
        audit.record(current_user.username, "call.hangup", who, request.remote_addr,
                     f"call {call.id}, Call-ID {call.call_id}")
    log.info("Panel: %s hung up call %d (%s, Call-ID %s)", current_user.username, call.id, who,
             call.call_id)
    flash(_("The call %(who)s is being hung up.", who=who), "success")
    return redirect(url_for(".active"))


def _confirm_hangup(call: Call):
    if not can_change():
        abort(403)
    caller_name, callee_name = _party_names(call, _names([call]))
    return render_template("calls/hangup.html", call=call, form=EmptyForm(),
                           caller_name=caller_name, callee_name=callee_name, now=time.time())

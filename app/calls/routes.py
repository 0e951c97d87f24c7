import logging
import time
from collections import defaultdict

from flask import (
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
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
from app.filters import can_change, format_duration, format_time, format_utc, translated
from app.i18n import N_
from app.names import names_of, numbers_in
from core import audit, control, recording
from core.models import Call, CallEvent, db

log = logging.getLogger("panel")

# The routing step's words for why a call was forwarded (sipd/routing/plan.py Event.detail),
# shown translated where a detail is exactly one of these (app/filters.py `translated`).
EVENT_DETAILS = (N_("always"), N_("busy"), N_("no answer"), N_("unavailable"))


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
    events = events_by_call([call.id for call in page.rows])
    names = _names(page.rows) | names_of(number for rows in events.values() for event in rows
                                         for number in (event.by, event.target))
    return render_template("calls/history.html", form=form, page=page, filters=form.args(),
                           events=events, names=names, now=time.time())


def events_by_call(call_ids: list[int]) -> dict[int, list[CallEvent]]:
    """{call id: its forwards, group steps and transfers in order}, in one query."""
    events: dict[int, list[CallEvent]] = defaultdict(list)
    if call_ids:
        query = (CallEvent.select().where(CallEvent.call.in_(call_ids))
                 .order_by(CallEvent.at, CallEvent.id))
        for event in query:
            events[event.call].append(event)
    return events


# An id past SQLite's 64-bit integers would raise OverflowError in the query: a 404.
@bp.route(f"/<int(max={2**63 - 1}):call_id>")
@login_required
def show(call_id: int):
    call = Call.get_or_none(Call.id == call_id)
    if call is None:
        abort(404, description=_("There is no such call."))
    events = events_by_call([call.id])[call.id]
    names = _names([call]) | names_of(n for event in events for n in (event.by, event.target))
    return render_template("calls/show.html", call=call, events=events, names=names,
                           ringing=numbers_in(call.ringing), now=time.time())


def recording_state(call: Call) -> str:
    """What the panel can offer of a call's recording: "" (none), "live" (the media
    process writes the file when the call ends), "missing" (named on the row but
    gone from PBX_RECORDING_DIR), or "ready"."""
    if not call.recording:
        return ""
    path = recording.file_of(current_app.config["PBX_SETTINGS"].recording_dir, call.recording)
    if path is not None and path.is_file():
        return "ready"
    return "live" if call.ended_at is None else "missing"


bp.add_app_template_global(recording_state, "recording_state")


# The file comes from the call's row (sipd named it there), never from the URL.
@bp.route(f"/<int(max={2**63 - 1}):call_id>/recording")
@login_required
def recording_file(call_id: int):
    call = Call.get_or_none(Call.id == call_id)
    if call is None:
        abort(404, description=_("There is no such call."))
    state = recording_state(call)
    if not state:
        abort(404, description=_("This call was not recorded."))
    if state == "live":
        abort(404, description=_("This call is still being recorded: the file is written when "
                                 "it ends."))
    if state == "missing":
        abort(404, description=_("The recording of this call is missing from the server (removed "
                                 "after PBX_RECORDING_DAYS, or by hand)."))
    path = recording.file_of(current_app.config["PBX_SETTINGS"].recording_dir, call.recording)
    return send_file(path, mimetype="audio/wav", conditional=True,
                     as_attachment=request.args.get("download") == "1",
                     download_name=f"call-{path.name}")


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
    """The live calls, each with `transfers`: its transfers as they happen (the
    call_event rows sipd writes when a REFER moves a party, sipd/b2bua/transfer.py)."""
    calls = list(Call.active())
    transfers = defaultdict(list)
    if calls:
        for event in (CallEvent.select()
                      .where(CallEvent.call.in_([c.id for c in calls]),
                             CallEvent.kind == "transferred")
                      .order_by(CallEvent.id)):
            transfers[event.call].append(event)
    for call in calls:
        call.transfers = transfers.get(call.id, [])
    return calls


def _names(calls) -> dict[str, str]:
    """{number: the panel's name of that extension or ring group} for every number
    `calls` name: the parties, the group, who rings now and who answered."""
    return names_of(number for call in calls for number in (
        call.caller, call.callee, call.via_group, call.answered_by, *numbers_in(call.ringing),
        *(n for e in getattr(call, "transfers", ()) for n in (e.by, e.target))))


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
        # Routing: the group the call came through, who rings now, who answered.
        "via_group": call.via_group,
        "via_group_name": names.get(call.via_group, "") if call.via_group else "",
        "ringing": [[number, names.get(number, "")] for number in numbers_in(call.ringing)],
        "answered_by": call.answered_by,
        "answered_by_name": names.get(call.answered_by, "") if call.answered_by else "",
        "transfers": [[e.by, names.get(e.by, ""), e.target, names.get(e.target, ""),
                       translated(e.detail)] for e in getattr(call, "transfers", ())],
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

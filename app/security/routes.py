"""Failed SIP authentications, bans (and lifting them), and the audit log of every change."""
import logging
import time
from datetime import datetime

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from app.calls.history import Page, page_number
from app.security import bp
from app.security.forms import AuditFilter, LiftForm
from app.status import known_numbers, recent_failures
from core import audit as audit_log
from core import bans as ban_rows
from core.audit import ACTIONS
from core.models import db

log = logging.getLogger("panel")
# Bans shown below the ones in force: the latest, lifted or expired.
BAN_HISTORY = 50


@bp.route("/failures")
@login_required
def failures():
    attempts = list(recent_failures())
    return render_template(
        "security/failures.html",
        attempts=attempts,
        known=known_numbers(attempt.number for attempt in attempts),
    )


def _timestamp(moment: datetime | None, extra: float = 0.0) -> float | None:
    # The admin's wall clock in the server's zone, like every time the panel shows.
    return None if moment is None else time.mktime(moment.timetuple()) + extra


@bp.route("/audit")
@login_required
def audit():
    form = AuditFilter(formdata=request.args)
    if not form.validate():
        # A filter we cannot apply shows nothing rather than everything.
        return render_template("security/audit.html", form=form, page=None, filters={},
                               actions=ACTIONS), 400
    # "Until 09:30" includes the minute 09:30 (the form has no seconds).
    until = _timestamp(form.until.data, 60)
    query = audit_log.entries(form.actor.data or "", form.action.data or "",
                              _timestamp(form.since.data), until)
    page = Page(query, page_number(request.args.get("page")),
                current_app.config["PANEL_PAGE_SIZE"])
    return render_template("security/audit.html", form=form, page=page, filters=form.args(),
                           actions=ACTIONS)


@bp.route("/bans")
@login_required
def bans():
    now = time.time()
    conn = db.connection()
    return render_template(
        "security/bans.html",
        active=ban_rows.active(conn, now),
        history=[ban for ban in ban_rows.history(conn, BAN_HISTORY)
                 if ban.lifted_at is not None or ban.expires_at <= now],
        form=LiftForm(),
        now=now,
    )


@bp.route("/bans/lift", methods=["POST"])
@login_required
def lift():
    form = LiftForm()
    if not form.validate_on_submit():
        flash(_("Nothing lifted: the form was incomplete."), "error")
        return redirect(url_for(".bans"))
    try:
        address = ban_rows.normalize(form.address.data)
    except ban_rows.BanError as error:
        flash(f"Nothing lifted: {error}.", "error")
        return redirect(url_for(".bans"))
    # The same UPDATE as `pbxctl ban rm`, with its audit row in one transaction.
    with db.atomic():
        lifted = ban_rows.lift(db.connection(), address, current_user.username, time.time())
        if lifted:
            audit_log.record(current_user.username, "ban.lift", address, request.remote_addr,
                             f"{lifted} ban{'s' if lifted > 1 else ''}")
    if lifted:
        log.info("Panel: %s lifted the ban of %s", current_user.username, address)
        flash(_("The ban of %(address)s is lifted; sipd answers it again within a second.",
                address=address), "success")
    else:
        flash(_("%(address)s is not banned (any more).", address=address), "info")
    return redirect(url_for(".bans"))

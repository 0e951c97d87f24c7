"""Failed SIP authentications, and the audit log of every change."""
from flask import current_app, render_template, request
from flask_login import login_required

from app.calls.history import Page, page_number
from app.security import bp
from app.status import known_numbers, recent_failures
from core.audit import ACTIONS
from core.models import AuditEntry


@bp.route("/failures")
@login_required
def failures():
    attempts = list(recent_failures())
    return render_template(
        "security/failures.html",
        attempts=attempts,
        known=known_numbers(attempt.number for attempt in attempts),
    )


@bp.route("/audit")
@login_required
def audit():
    query = AuditEntry.select().order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
    page = Page(query, page_number(request.args.get("page")),
                current_app.config["PANEL_PAGE_SIZE"])
    return render_template("security/audit.html", page=page, actions=ACTIONS)

from flask import render_template
from flask_login import login_required

from app.security import bp
from app.status import known_numbers, recent_failures


@bp.route("/failures")
@login_required
def failures():
    attempts = list(recent_failures())
    return render_template(
        "security/failures.html",
        attempts=attempts,
        known=known_numbers(attempt.number for attempt in attempts),
    )

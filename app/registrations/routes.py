import time

from flask import render_template
from flask_login import login_required

from app.registrations import bp
from app.status import live_bindings


@bp.route("/")
@login_required
def index():
    now = time.time()
    return render_template(
        "registrations/index.html", bindings=list(live_bindings(now)), now=now
    )

"""No forms: PBX_* settings come from the environment (/etc/pbx/pbx.env on a server)."""
from flask import current_app, render_template
from flask_login import login_required

from app.settings import bp
from core import phone_settings


@bp.route("/")
@login_required
def index():
    settings = current_app.config["PBX_SETTINGS"]
    low, high = settings.rtp_ports
    return render_template(
        "settings/index.html",
        settings=settings,
        phones=phone_settings.current(settings),
        rtp_count=high - low + 1,
        idle_minutes=current_app.config["PANEL_IDLE_TIMEOUT"] // 60,
        lifetime_hours=current_app.permanent_session_lifetime.total_seconds() / 3600,
    )

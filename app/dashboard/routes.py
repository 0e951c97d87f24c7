"""The dashboard page: figures, two charts (timelines.py), the services and the storage.

Read-only, so viewers see it too. The clock is `PANEL_CLOCK` in the app's
config when set (tests put rows at known times), else time.time.
Later issues add their own figures beside these (trunks: registered / total;
voicemail: new messages), each a function in figures.py and a tile or card.
"""

from __future__ import annotations

import os
import time
from datetime import date

from flask import current_app, render_template
from flask_login import login_required

from app.dashboard import STARTED_AT, bp, figures
from app.dashboard.timelines import (
    calls_chart,
    calls_summary,
    registrations_chart,
    registrations_summary,
)
from core import samples, services
from core.version import code_version


def _now() -> float:
    return current_app.config.get("PANEL_CLOCK", time.time)()


@bp.route("/")
@login_required
def index():
    now = _now()
    settings = current_app.config["PBX_SETTINGS"]
    sipd = services.state_of("sipd", now)
    hours = figures.calls_per_hour(now)
    slots = figures.registrations_per_slot(now)
    began = samples.first_taken()
    return render_template(
        "dashboard/index.html",
        now=now,
        extensions=figures.extensions(now),
        live=figures.live_calls(),
        today=figures.calls_today(now),
        today_iso=date.fromtimestamp(now).isoformat(),
        security=figures.security(now),
        calls_chart=calls_chart(hours),
        calls_summary=calls_summary(hours),
        registrations_chart=registrations_chart(slots, began) if _any_value(slots) else None,
        registrations_summary=registrations_summary(slots, began),
        sample_minutes=samples.SAMPLE_EVERY // 60,
        sipd=sipd,
        relay=services.media_relay(settings.run_dir),
        panel={"pid": os.getpid(), "version": code_version(), "since": STARTED_AT,
               "listen": f"{settings.panel_host}:{settings.panel_port}"},
        storage=figures.storage(settings.db_path),
        schema_version=figures.schema_version(),
        trunks=figures.trunks(),
        blocked=figures.blocked_extensions(),
    )


def _any_value(slots) -> bool:
    return any(slot.value is not None for slot in slots)

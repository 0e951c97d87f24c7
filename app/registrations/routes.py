"""Every live binding (registered contact) of every extension; an admin may drop one.

Dropping deletes the binding's row (core/registrations.py): sipd reads the
bindings from the database for every call, so nothing needs telling it."""
import logging
import time

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from app.registrations import bp
from app.registrations.forms import DropForm
from app.status import live_bindings
from core import registrations

log = logging.getLogger("panel")


@bp.route("/")
@login_required
def index():
    now = time.time()
    return render_template(
        "registrations/index.html", bindings=list(live_bindings(now)), now=now, form=DropForm()
    )


@bp.route("/drop", methods=["POST"])
@login_required
def drop():
    form = DropForm()
    if not form.validate_on_submit():
        flash(_("Nothing dropped: the form was incomplete."), "error")
        return redirect(url_for(".index"))
    try:
        dropped = registrations.drop(current_user.username, request.remote_addr,
                                     binding_id=form.binding.data)
    except registrations.RegistrationError as error:
        flash(f"Nothing dropped: {error}.", "info")
        return redirect(url_for(".index"))
    for binding in dropped:
        log.info("Panel: %s dropped the registration of %s (%s)", current_user.username,
                 binding.extension.number, binding.contact)
        flash(_("Dropped the registration of %(number)s (%(contact)s); calls no longer ring"
                " it. A live phone comes back at its next refresh.",
                number=binding.extension.number, contact=binding.contact), "success")
    return redirect(url_for(".index"))

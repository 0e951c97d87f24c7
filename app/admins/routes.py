"""Panel users. Every view is for admins only: a viewer gets 403 on the list too.

The same core.accounts functions as `pbxctl admin ...`, so the rules are the
same; the panel adds one: the last enabled admin can be neither disabled nor
made a viewer, so the panel is never left with nobody to manage it.
"""

import logging

from flask import abort, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from app import login_manager
from app.admins import bp
from app.admins.forms import ROLE_NAMES, AdminForm, RoleForm
from app.auth.forms import EmptyForm
from app.filters import sentence, translated
from core import audit
from core.accounts import AccountError, create_admin, set_admin_enabled, set_admin_role
from core.models import Admin, db

log = logging.getLogger("panel")


@bp.before_request
def admins_only():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if current_user.role != "admin":
        abort(403, description=_("Managing panel users is for admins."))
    return None


def _admin_or_404(username: str) -> Admin:
    admin = Admin.by_username(username)
    if admin is None:
        abort(404, description=_("There is no panel user %(user)s.", user=username))
    return admin


def _audit(action: str, username: str, detail: str = "") -> None:
    """Call inside the change's transaction: the row and the change go together."""
    audit.record(current_user.username, f"admin.{action}", username, request.remote_addr, detail)
    log.info("Panel: %s: admin.%s %s%s", current_user.username, action, username,
             f" ({detail})" if detail else "")


@bp.route("/")
def index():
    return render_template(
        "admins/index.html",
        admins=list(Admin.select().order_by(Admin.username)),
        role_form=RoleForm(),
        form=EmptyForm(),
    )


@bp.route("/new", methods=["GET", "POST"])
def create():
    form = AdminForm()
    if form.validate_on_submit():
        try:
            with db.atomic():
                admin, password, generated = create_admin(
                    form.username.data, form.chosen_password, form.role.data
                )
                _audit("create", admin.username, f"role {admin.role}, "
                       + ("generated password" if generated else "password set"))
        except AccountError as error:
            form.form_errors.append(sentence(translated(error.args[0])))
        else:
            return _show_password(admin, password, generated)
    return render_template("admins/new.html", form=form)


def _show_password(admin: Admin, password: str, generated: bool):
    """The one page that ever shows this password: in the POST response, never cached."""
    response = make_response(render_template(
        "admins/created.html", admin=admin, password=password, generated=generated,
    ))
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@bp.route("/<username>/role", methods=["POST"])
def role(username: str):
    admin = _admin_or_404(username)
    form = RoleForm()
    if not form.validate_on_submit():
        flash(_("Choose admin or viewer."), "error")
        return redirect(url_for(".index"))
    if form.role.data == admin.role:
        flash(_("%(user)s is %(role)s already.", user=admin.username,
                role=ROLE_NAMES[admin.role]), "info")
        return redirect(url_for(".index"))
    try:
        with db.atomic():
            set_admin_role(admin.username, form.role.data)
            _audit("role", admin.username, f"{admin.role} -> {form.role.data}")
    except AccountError as error:
        flash(sentence(translated(error.args[0])), "error")
    else:
        flash(_("%(user)s is now %(role)s.", user=admin.username, role=ROLE_NAMES[form.role.data]),
              "success")
    return redirect(url_for(".index"))


@bp.route("/<username>/disable", methods=["POST"])
def disable(username: str):
    return _set_enabled(username, False)


@bp.route("/<username>/enable", methods=["POST"])
def enable(username: str):
    return _set_enabled(username, True)


def _set_enabled(username: str, enabled: bool):
    admin = _admin_or_404(username)
    if not EmptyForm().validate_on_submit():
        return redirect(url_for(".index"))
    if bool(admin.enabled) == enabled:
        flash(_("%(user)s is enabled already.", user=admin.username) if enabled
              else _("%(user)s is disabled already.", user=admin.username), "info")
        return redirect(url_for(".index"))
    try:
        with db.atomic():
            set_admin_enabled(admin.username, enabled, keep_an_admin=True)
            _audit("enable" if enabled else "disable", admin.username)
    except AccountError as error:
        flash(sentence(translated(error.args[0])), "error")
        return redirect(url_for(".index"))
    if enabled:
        flash(_("%(user)s is enabled.", user=admin.username), "success")
    else:
        # Their sessions ended with the write (the session epoch); this one too
        # if they disabled themself, and the next page says so.
        flash(_("%(user)s is disabled; every session of theirs has ended.", user=admin.username),
              "info")
    return redirect(url_for(".index"))

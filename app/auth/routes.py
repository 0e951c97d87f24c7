import logging
import time
from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from app.auth import bp
from app.auth.forms import EmptyForm, LoginForm
from core.accounts import verify_admin
from core.models import Admin

log = logging.getLogger("panel")


def safe_next(target: str | None) -> str | None:
    """`target` if it is a path on this site, else None (no open redirect).

    Browsers ignore tabs and newlines in URLs and read a backslash as a slash,
    so "/\\evil.example" and "/\\t/evil.example" both mean //evil.example.
    """
    if not target or not target.startswith("/"):
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in target):
        return None
    if target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if request.method == "GET":
        form.next.data = safe_next(request.args.get("next")) or ""
    if current_user.is_authenticated and request.method == "GET":
        return redirect(safe_next(form.next.data) or url_for("extensions.index"))
    if form.validate_on_submit():
        admin = verify_admin(form.username.data, form.password.data)
        if admin is None:
            log.warning(
                "Panel login failed for %r from %s", form.username.data, request.remote_addr
            )
            form.password.errors.append("Wrong user name or password.")
        else:
            target = safe_next(form.next.data) or url_for("extensions.index")
            # A fresh session for the new identity, with a fresh CSRF token.
            session.clear()
            login_user(admin)
            Admin.update(last_login_at=time.time()).where(Admin.id == admin.id).execute()
            log.info("Panel login of %s from %s", admin.username, request.remote_addr)
            return redirect(target)
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    if EmptyForm().validate_on_submit():
        logout_user()
        session.clear()
        flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))

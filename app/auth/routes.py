import logging
import time
from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import refresh
from flask_login import current_user, login_required, login_user, logout_user

from app.auth import bp, sessions, throttle
from app.auth.forms import EmptyForm, LanguageForm, LoginForm, PasswordForm
from app.filters import sentence, translated
from core import audit
from core.accounts import AccountError, end_sessions, set_admin_password, verify_admin
from core.models import Admin, db

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
        return redirect(safe_next(form.next.data) or url_for("index"))
    if form.validate_on_submit():
        username, address = form.username.data, request.remote_addr
        wait = throttle.wait_seconds(username, address)
        if wait:
            # Refused before the password is even looked at.
            log.warning("Panel login refused for %r from %s: throttled for %d s",
                        username, address, wait)
            form.form_errors.append(too_many(wait))
            return render_template("auth/login.html", form=form), 429
        admin = verify_admin(username, form.password.data)
        if admin is None:
            with db.atomic(lock_type="IMMEDIATE"):
                locked = throttle.failed(username, address)
                audit.record("", "login_failed", username, address,
                             f"locked for {locked} s" if locked else "")
            log.warning("Panel login failed for %r from %s", username, address)
            form.password.errors.append(_("Wrong user name or password."))
            if locked:
                form.form_errors.append(too_many(locked))
        else:
            target = safe_next(form.next.data) or url_for("index")
            # A fresh session for the new identity, with a fresh CSRF token.
            session.clear()
            login_user(admin)
            sessions.start(admin)
            with db.atomic():
                throttle.succeeded(username, address)
                Admin.update(last_login_at=time.time()).where(Admin.id == admin.id).execute()
                audit.record(admin.username, "login", admin.username, address)
            log.info("Panel login of %s from %s", admin.username, address)
            return redirect(target)
    return render_template("auth/login.html", form=form)


def too_many(seconds: int) -> str:
    return _("Too many failed logins, try again in %(seconds)s s.", seconds=seconds)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    if EmptyForm().validate_on_submit():
        # Server-side: a copy of this cookie, and every other session of this
        # admin, ends with it (app/auth/sessions.py).
        with db.atomic():
            end_sessions(current_user)
            audit.record(current_user.username, "logout", current_user.username,
                         request.remote_addr)
        logout_user()
        session.clear()
        flash(_("You are logged out, in every browser where you were logged in."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account():
    """A panel user's own password. Every other session of theirs ends; this one goes on."""
    form = PasswordForm()
    if not form.validate_on_submit():
        return _account_page(form)
    username, address = current_user.username, request.remote_addr
    wait = throttle.wait_seconds(username, address)
    if wait:
        form.form_errors.append(too_many(wait))
        return _account_page(form), 429
    # The current password, so that a borrowed or stolen session cannot lock the owner out.
    if verify_admin(username, form.current.data) is None:
        with db.atomic():
            locked = throttle.failed(username, address)
            audit.record(username, "login_failed", username, address,
                         "wrong current password on the password page"
                         + (f", locked for {locked} s" if locked else ""))
        log.warning("Panel password change refused for %s from %s: wrong current password",
                    username, address)
        form.current.errors.append(_("This is not your current password."))
        if locked:
            form.form_errors.append(too_many(locked))
        return _account_page(form)
    try:
        with db.atomic():
            # "" rather than None when the field is missing: None would generate one.
            admin = set_admin_password(username, form.password.data or "")[0]
            audit.record(username, "admin.password", username, address, "own password")
    except AccountError as error:
        form.password.errors.append(
            sentence(_("The %(error)s", error=translated(error.args[0]))))
        return _account_page(form)
    # This session goes on under the new epoch; copies of its old cookie do not.
    session.clear()
    login_user(admin)
    sessions.start(admin)
    log.info("Panel password of %s changed from %s", username, address)
    flash(_("Your password is changed. Every other session of yours has ended."), "success")
    return redirect(url_for("extensions.index"))


def _account_page(form: PasswordForm, language_form: LanguageForm | None = None) -> str:
    if language_form is None:
        language_form = LanguageForm(language=current_user.language or get_locale_code())
    return render_template("auth/account.html", form=form, language_form=language_form)


def get_locale_code() -> str:
    from app.i18n import select_locale

    return select_locale()


@bp.route("/account/language", methods=["POST"])
@login_required
def language():
    """The panel's language for this admin, kept on their account for every browser."""
    form = LanguageForm()
    if not form.validate_on_submit():
        return _account_page(PasswordForm(formdata=None), form), 400
    # Not audited: like the theme of a desktop, it changes nothing of the PBX.
    Admin.update(language=form.language.data).where(Admin.id == current_user.id).execute()
    current_user.language = form.language.data
    refresh()  # this response already in the new language
    flash(_("The panel's language is saved."), "success")
    return redirect(url_for("auth.account"))

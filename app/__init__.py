"""The admin panel: create_app() and the extensions it binds.

State shown here comes from the shared database (core/); the panel talks to
sipd only through its local control socket (core/control.py), to hang up a
call. Every change is a POST from a FlaskForm, so the global CSRFProtect
covers it, and a viewer may look but never POST.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, abort, render_template, request
from flask_babel import gettext
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFProtect

from app.i18n import N_
from core.config import ConfigError, Settings, load_settings
from core.database import connect, secret_key
from core.models import Admin, db

login_manager = LoginManager()
csrf = CSRFProtect()

# test_config keys that override fields of Settings rather than Flask config.
_SETTINGS_KEYS = {
    "DB_PATH": "db_path",
    "REALM": "realm",
    "CONTROL_SOCKET": "control_socket",
    "PUBLIC_ADDRESS": "public_address",
    "RTP_PORTS": "rtp_ports",
    "RUN_DIR": "run_dir",
    "VOICEMAIL_DIR": "voicemail_dir",
    "RECORDING_DIR": "recording_dir",
    "SOUNDS_DIR": "sounds_dir",
    "PROMPTS_DIR": "prompts_dir",
    "MOH_FILE": "moh_file",
}
# Endpoints a viewer may still POST to: arriving, leaving, their own password and
# language are not changes to the PBX.
_VIEWER_POST_ALLOWED = {"auth.login", "auth.logout", "auth.account", "auth.language"}
# A secret on a server must look random: at least this many different characters
# (a placeholder such as "changeme" repeated, or one letter 40 times, has fewer).
_MIN_SECRET_VARIETY = 10


def create_app(test_config: dict | None = None, settings: Settings | None = None) -> Flask:
    """Build the panel.

    `settings` defaults to core.config.load_settings() (the PBX_* environment);
    `test_config` may override DB_PATH and REALM of those settings and any
    Flask config key (SECRET_KEY, TESTING, WTF_CSRF_ENABLED, ...).
    """
    test_config = dict(test_config or {})
    settings = settings or load_settings()
    overrides = {
        field: test_config.pop(key) for key, field in _SETTINGS_KEYS.items() if key in test_config
    }
    if overrides:
        settings = dataclasses.replace(settings, **overrides)

    app = Flask(__name__)
    app.config.update(
        PBX_SETTINGS=settings,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # On a server the panel sits behind nginx's HTTPS; in a checkout it is
        # plain http://127.0.0.1, where a Secure cookie would never come back.
        SESSION_COOKIE_SECURE=settings.server,
        # __Host-: the browser keeps it only if Secure, for this host and path /.
        SESSION_COOKIE_NAME="__Host-pbx-session" if settings.server else "session",
        # The absolute lifetime of a login; an idle session ends sooner (app/auth/sessions.py).
        PERMANENT_SESSION_LIFETIME=timedelta(hours=8),
        PANEL_IDLE_TIMEOUT=30 * 60,
        PANEL_PAGE_SIZE=50,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=settings.server,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    app.config.update(test_config)

    # Migrations run once here; requests then open and close their own connection.
    database = connect(settings)
    try:
        if not app.config.get("SECRET_KEY"):
            app.config["SECRET_KEY"] = secret_key(settings)
    finally:
        database.close()
    if settings.server:
        _require_a_real_secret(app.config["SECRET_KEY"])
        # Behind nginx: the client's address from X-Forwarded-For, trusted from loopback only.
        from app.proxy import LoopbackProxyFix

        app.wsgi_app = LoopbackProxyFix(app.wsgi_app)

    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = N_("Please log in to see this page.")
    login_manager.localize_callback = gettext
    login_manager.login_message_category = "info"
    csrf.init_app(app)

    from app.auth import sessions

    app.before_request(_open_db)
    app.teardown_request(_close_db)
    app.before_request(sessions.check)
    app.before_request(_viewers_only_look)
    app.after_request(_security_headers)
    app.after_request(_relative_location)
    for code in (400, 403, 404, 405, 413):
        app.register_error_handler(code, error_page)

    from app import filters, i18n
    from app.admins import bp as admins_bp
    from app.auth import bp as auth_bp
    from app.calls import bp as calls_bp
    from app.dashboard import bp as dashboard_bp
    from app.extensions import bp as extensions_bp
    from app.groups import bp as groups_bp
    from app.ivr import bp as ivr_bp
    from app.registrations import bp as registrations_bp
    from app.security import bp as security_bp
    from app.settings import bp as settings_bp
    from app.sounds import bp as sounds_bp
    from app.trunks import bp as trunks_bp
    from app.voicemail import bp as voicemail_bp

    filters.init_app(app)
    i18n.init_app(app)
    app.register_blueprint(auth_bp)
    app.register_blueprint(dashboard_bp)
    app.register_blueprint(extensions_bp)
    app.register_blueprint(groups_bp)
    app.register_blueprint(ivr_bp)
    app.register_blueprint(trunks_bp)
    app.register_blueprint(registrations_bp)
    app.register_blueprint(calls_bp)
    app.register_blueprint(security_bp)
    app.register_blueprint(settings_bp)
    app.register_blueprint(admins_bp)
    app.register_blueprint(voicemail_bp)
    app.register_blueprint(sounds_bp)
    # `/` is the dashboard; url_for("index") still names it, for the links that use it.
    app.add_url_rule("/", "index", build_only=True)
    return app


def _require_a_real_secret(key: str) -> None:
    if len(key) < 32 or len(set(key)) < _MIN_SECRET_VARIETY:
        raise ConfigError(
            "PBX_SECRET_KEY is not a real secret: use a random value of at least 32"
            " characters, e.g. the output of: python3 -c 'import secrets;"
            " print(secrets.token_urlsafe(48))'"
        )


@login_manager.user_loader
def _load_admin(admin_id: str) -> Admin | None:
    from app.auth import sessions

    return sessions.load(admin_id)


def _open_db() -> None:
    db.connect(reuse_if_open=True)


def _close_db(_exc: BaseException | None) -> None:
    if not db.is_closed():
        db.close()


def _viewers_only_look():
    """One rule for every POST route, so a new route cannot forget it."""
    if request.method in {"GET", "HEAD", "OPTIONS"}:
        return None
    if request.endpoint in _VIEWER_POST_ALLOWED:
        return None
    if current_user.is_authenticated and current_user.role != "admin":
        abort(403)
    return None


# Werkzeug's names and its default descriptions are English; the panel's own
# descriptions (abort(404, description=...)) are translated where they are made.
_ERRORS = {
    400: (N_("Bad request"), N_("The browser sent a request this panel cannot use.")),
    403: (N_("Forbidden"), N_("Your account may not do this.")),
    404: (N_("Not found"), N_("There is no such page.")),
    405: (N_("Method not allowed"), N_("This page does not take that kind of request.")),
    413: (N_("Too large"), N_("What the browser sent is larger than this page takes.")),
}


def error_page(error):
    """The panel's page for an HTTP error (also app/uploads.py's, for what it does not answer)."""
    # CSRFError is a 400 whose description says what was missing.
    name, default = _ERRORS[error.code]
    description = error.description
    if description == type(error).description:
        description = gettext(default)
    return render_template("errors.html", error=error, name=gettext(name),
                           description=description), error.code


def _relative_location(response):
    """Redirects name no host: the browser resolves a path against the URL it asked for.

    Werkzeug's own redirects (a missing trailing slash, merged slashes) are
    absolute URLs built from the request's Host header, which anyone can set
    (nginx passes any name to its default server): `Host: evil.example` came back
    as `Location: http://evil.example/calls/`, for a cache or a mail link to
    keep. The panel never redirects to another site, so every Location becomes
    its path, query and fragment; leading slashes are made one, so a path can
    never turn into a scheme-relative //host.
    """
    location = response.headers.get("Location")
    if not location:
        return response
    parts = urlsplit(location)
    if parts.scheme or parts.netloc or parts.path.startswith("//"):
        path = "/" + parts.path.lstrip("/")
        response.headers["Location"] = urlunsplit(("", "", path, parts.query, parts.fragment))
    return response


def _security_headers(response):
    # Defence in depth behind Jinja's escaping: nothing inline, nothing foreign.
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none';"
        " form-action 'self'; frame-ancestors 'none'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    response.headers.setdefault(
        "Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()"
    )
    if request.endpoint != "static":
        # Pages carry what phones sent and who is logged in: never kept by a cache,
        # nor shown again by the back button after logging out.
        response.headers.setdefault("Cache-Control", "no-store")
    return response

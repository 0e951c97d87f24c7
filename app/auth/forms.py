from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length

from app.i18n import LANGUAGES


class LoginForm(FlaskForm):
    username = StringField(
        _l("User name"), validators=[DataRequired(), Length(max=64)],
        render_kw={"autocomplete": "username", "autocapitalize": "none", "autofocus": True},
    )
    password = PasswordField(
        _l("Password"), validators=[DataRequired(), Length(max=256)],
        render_kw={"autocomplete": "current-password"},
    )
    next = HiddenField()
    submit = SubmitField(_l("Log in"))


class EmptyForm(FlaskForm):
    """A bare button that changes state: the form exists for its CSRF token."""


class PasswordForm(FlaskForm):
    """A panel user's own new password; core.accounts checks it (blank ones included)."""

    current = PasswordField(
        _l("Current password"), validators=[DataRequired(), Length(max=256)],
        render_kw={"autocomplete": "current-password", "autofocus": True},
    )
    password = PasswordField(
        # Not DataRequired: it strips, and would call ten spaces "required" rather
        # than what they are (the policy in core.accounts says "blank"). No
        # Length either: its maxlength would make the browser cut this field and
        # not the other; core.accounts says the limit.
        _l("New password"),
        render_kw={"autocomplete": "new-password"},
    )
    confirm = PasswordField(
        _l("New password again"),
        validators=[EqualTo("password", message=_l("The two new passwords differ."))],
        render_kw={"autocomplete": "new-password"},
    )
    submit = SubmitField(_l("Change password"))


class LanguageForm(FlaskForm):
    """The panel's language for this admin; kept on their account (app/i18n.py)."""

    language = SelectField(
        _l("Language"), choices=[SelectChoice(code, name) for code, name in LANGUAGES.items()])
    save = SubmitField(_l("Save language"))

from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length


class LoginForm(FlaskForm):
    username = StringField(
        "User name", validators=[DataRequired(), Length(max=64)],
        render_kw={"autocomplete": "username", "autocapitalize": "none", "autofocus": True},
    )
    password = PasswordField(
        "Password", validators=[DataRequired(), Length(max=256)],
        render_kw={"autocomplete": "current-password"},
    )
    next = HiddenField()
    submit = SubmitField("Log in")


class EmptyForm(FlaskForm):
    """A bare button that changes state: the form exists for its CSRF token."""


class PasswordForm(FlaskForm):
    """A panel user's own new password; core.accounts checks it (blank ones included)."""

    current = PasswordField(
        "Current password", validators=[DataRequired(), Length(max=256)],
        render_kw={"autocomplete": "current-password", "autofocus": True},
    )
    password = PasswordField(
        # Not DataRequired: it strips, and would call ten spaces "required" rather
        # than what they are (the policy in core.accounts says "blank"). No
        # Length either: its maxlength would make the browser cut this field and
        # not the other; core.accounts says the limit.
        "New password",
        render_kw={"autocomplete": "new-password"},
    )
    confirm = PasswordField(
        "New password again",
        validators=[EqualTo("password", message="The two new passwords differ.")],
        render_kw={"autocomplete": "new-password"},
    )
    submit = SubmitField("Change password")

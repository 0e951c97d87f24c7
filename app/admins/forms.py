"""Forms for panel users; the rules themselves live in core.accounts, as for pbxctl."""

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, RadioField, SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import ValidationError

from app.filters import sentence, translated
from core.accounts import ROLES, USERNAME_RE, admin_password_problem
from core.models import Admin

ROLE_NAMES = {"admin": _l("admin"), "viewer": _l("viewer")}
ROLE_CHOICES = [
    SelectChoice("admin", _l("Admin: may change everything")),
    SelectChoice("viewer", _l("Viewer: may look, not change")),
]
PASSWORD_CHOICES = [
    SelectChoice("generate", _l("Generate a strong password")),
    SelectChoice("set", _l("Set this password:")),
]


class AdminForm(FlaskForm):
    """A new panel user. A password typed while "Generate" stayed selected is the one
    set (as for extensions); neither field has a maxlength, core says the limit."""

    username = StringField(
        _l("User name"), render_kw={"autocomplete": "off", "autocapitalize": "none"},
    )
    role = SelectField(_l("Role"), choices=ROLE_CHOICES, default="viewer")
    mode = RadioField(_l("Password"), choices=PASSWORD_CHOICES, default="generate")
    password = PasswordField(_l("New password"), render_kw={"autocomplete": "new-password"})
    confirm = PasswordField(_l("Repeat it"), render_kw={"autocomplete": "new-password"})
    submit = SubmitField(_l("Add user"))

    def validate(self, extra_validators=None):
        if self.mode.data != "set" and (self.password.data or self.confirm.data):
            self.mode.data = "set"
        return super().validate(extra_validators)

    def validate_username(self, field):
        username = (field.data or "").strip()
        if not USERNAME_RE.match(username):
            raise ValidationError(_("The user name must be 1 to 64 letters, digits or _ . @ -."))
        existing = Admin.by_username(username)
        if existing is not None:
            raise ValidationError(_("There is a user %(user)s already"
                                    " (user names are not case-sensitive).",
                                    user=existing.username))

    def validate_password(self, field):
        if self.mode.data != "set":
            return
        problem = admin_password_problem(field.data or "", (self.username.data or "").strip())
        if problem:
            raise ValidationError(sentence(_("password %(problem)s", problem=translated(problem))))

    def validate_confirm(self, field):
        if self.mode.data == "set" and not self.password.errors \
                and field.data != self.password.data:
            raise ValidationError(_("The two passwords differ."))

    @property
    def chosen_password(self) -> str | None:
        """None generates one (core.accounts.create_admin)."""
        return self.password.data if self.mode.data == "set" else None


class RoleForm(FlaskForm):
    role = SelectField(_l("Role"),
                       choices=[SelectChoice(value, ROLE_NAMES[value]) for value in ROLES])
    submit = SubmitField(_l("Change role"))

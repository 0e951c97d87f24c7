"""Forms for extensions; the rules themselves live in core (accounts, credentials)."""

from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    IntegerField,
    PasswordField,
    RadioField,
    StringField,
    SubmitField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Optional, ValidationError

from app.filters import sentence, translated
from app.forms import core_rule
from app.trunks.forms import PERMISSION_CHOICES
from core.accounts import (
    MAX_CALLS_LIMIT,
    check_display_name,
    check_max_calls,
    check_number,
)
from core.credentials import password_problem
from core.forwarding import check_after
from core.models import Extension

PASSWORD_CHOICES = [
    SelectChoice("generate", _l("Generate a strong password")),
    SelectChoice("set", _l("Set this password:")),
]


class PasswordChoice:
    """Generate, or set one typed twice; a set password must pass the policy.

    Neither field has a maxlength: a browser cuts a longer paste silently, and
    cutting one field but not the other (or both, to a password other than the
    one pasted) is worse than saying the limit (core.credentials.MAX_PASSWORD_LENGTH).
    """

    mode = RadioField(_l("Password"), choices=PASSWORD_CHOICES, default="generate")
    password = PasswordField(_l("New password"), render_kw={"autocomplete": "new-password"})
    confirm = PasswordField(_l("Repeat it"), render_kw={"autocomplete": "new-password"})

    def number_for_policy(self) -> str:
        raise NotImplementedError

    def validate(self, extra_validators=None):
        if self.mode.data != "set" and (self.password.data or self.confirm.data):
            # A password typed while "Generate" stayed selected (the default) is
            # the one the admin means: it is checked and set, never replaced.
            self.mode.data = "set"
        return super().validate(extra_validators)

    def validate_password(self, field):
        if self.mode.data != "set":
            return
        if not field.data:
            raise ValidationError(_("Type the password, or choose to generate one."))
        realm = current_app.config["PBX_SETTINGS"].realm
        problem = password_problem(self.number_for_policy(), field.data, realm)
        if problem:
            raise ValidationError(sentence(_("password %(problem)s", problem=translated(problem))))

    def validate_confirm(self, field):
        # Said only of a password that is otherwise fine: its own error comes
        # first, and both fields are typed again anyway.
        if self.mode.data == "set" and not self.password.errors \
                and field.data != self.password.data:
            raise ValidationError(_("The two passwords differ."))

    @property
    def chosen_password(self) -> str | None:
        return self.password.data if self.mode.data == "set" else None


class SearchForm(FlaskForm):
    """The list's search box: a GET form (no CSRF: it changes nothing, links carry it)."""

    class Meta:
        csrf = False

    q = StringField(
        _l("Search"),
        validators=[Length(max=100, message=_l("Search for at most 100 characters."))],
        filters=[lambda v: (v or "").strip()],
        render_kw={"type": "search", "autocomplete": "off", "placeholder": _l("number or name")},
    )


class ExtensionForm(PasswordChoice, FlaskForm):
    number = StringField(
        _l("Number"), validators=[InputRequired(), core_rule(check_number)],
        render_kw={"inputmode": "numeric", "autocomplete": "off", "placeholder": "1002"},
    )
    name = StringField(_l("Display name"), validators=[core_rule(check_display_name)])
    enabled = BooleanField(_l("Enabled"), default=True)
    submit = SubmitField(_l("Create extension"))

    def number_for_policy(self) -> str:
        return (self.number.data or "").strip()

    def validate_number(self, field):
        number = (field.data or "").strip()
        if Extension.by_number(number) is not None:
            raise ValidationError(_("Extension %(number)s already exists.", number=number))


class EditForm(FlaskForm):
    name = StringField(_l("Display name"), validators=[core_rule(check_display_name)])
    enabled = BooleanField(_l("Enabled"))
    max_calls = IntegerField(
        _l("Calls at once"),
        # Left blank (or not sent): unchanged.
        validators=[Optional(), core_rule(check_max_calls)],
        render_kw={"inputmode": "numeric", "min": 1, "max": MAX_CALLS_LIMIT},
    )
    # Issue 12: what it may dial outside (core/outbound.py; the rest is on app/trunks/).
    outbound_permission = RadioField(_l("Outside calls"), choices=PERMISSION_CHOICES,
                                     validators=[Optional()])  # not sent: unchanged
    submit = SubmitField(_l("Save"))


class PasswordForm(PasswordChoice, FlaskForm):
    submit = SubmitField(_l("Change password"))

    def __init__(self, number: str, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._number = number

    def number_for_policy(self) -> str:
        return self._number


def _destination_field(label):
    return StringField(
        label, filters=[lambda v: (v or "").strip()],
        render_kw={"autocomplete": "off", "placeholder": _l("off")},
    )


class ForwardingForm(FlaskForm):
    """Where this extension's calls go instead (core/forwarding.py checks each place).

    Each field is a destination as everywhere else (core/destinations.py): an
    extension or ring group number, or "hangup"; left empty, that forward is off.
    """

    dnd = BooleanField(_l("Do not disturb"))
    always = _destination_field(_l("Always forward to"))
    busy = _destination_field(_l("When busy, forward to"))
    no_answer = _destination_field(_l("When not answered, forward to"))
    no_answer_after = IntegerField(
        _l("Ring for (seconds) before forwarding"),
        validators=[InputRequired(), core_rule(check_after)], default=20,
        render_kw={"inputmode": "numeric", "min": 1},
    )
    unavailable = _destination_field(_l("When no phone is registered, forward to"))
    submit = SubmitField(_l("Save"))

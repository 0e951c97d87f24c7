"""Lifting a ban (the address travels in the form, so CSRF covers it like any change),
and the audit log's filter."""

from datetime import datetime

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateTimeLocalField, HiddenField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Optional, ValidationError

from app.calls.forms import EARLIEST, LATEST
from core.audit import ACTIONS

TIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]


class LiftForm(FlaskForm):
    address = HiddenField(validators=[InputRequired(), Length(max=64)])


class TimeField(DateTimeLocalField):
    """A datetime-local input whose error says what to type."""

    def process_formdata(self, valuelist):
        try:
            super().process_formdata(valuelist)
        except ValueError:
            raise ValueError("Enter a date and time, e.g. 2026-03-01 09:30.") from None


class AuditFilter(FlaskForm):
    """The audit log's filter: a GET form (no CSRF: it changes nothing, links carry it)."""

    class Meta:
        csrf = False

    actor = StringField(
        _l("Who"), validators=[Optional(), Length(max=80)], filters=[lambda v: (v or "").strip()],
        render_kw={"autocomplete": "off", "placeholder": _l("anyone")},
    )
    action = SelectField(_l("What"), default="", validators=[Optional()])
    # The browser's datetime-local sends "2026-03-01T09:30"; a hand-typed space works too.
    since = TimeField(_l("Since"), validators=[Optional()], format=TIME_FORMATS)
    until = TimeField(_l("Until"), validators=[Optional()], format=TIME_FORMATS)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Built here, not at import: every action core/audit.py knows, as the table shows it.
        self.action.choices = [SelectChoice("", _l("Any change"))] + [
            SelectChoice(key, f"{_(label)} ({key})") for key, label in ACTIONS.items()
        ]

    def validate_since(self, field):
        _within_log(field.data)

    def validate_until(self, field):
        _within_log(field.data)
        if field.data and self.since.data and field.data < self.since.data:
            raise ValidationError(_("The end is before the start."))

    def args(self) -> dict[str, str]:
        """The filter as query parameters, for the pager's links."""
        values = {
            "actor": self.actor.data or "",
            "action": self.action.data or "",
            "since": self.since.data.strftime(TIME_FORMATS[0]) if self.since.data else "",
            "until": self.until.data.strftime(TIME_FORMATS[0]) if self.until.data else "",
        }
        return {key: value for key, value in values.items() if value}


def _within_log(moment: datetime | None) -> None:
    # Outside these years the conversion to a timestamp overflows (a 500).
    if moment is not None and not EARLIEST.year <= moment.year <= LATEST.year:
        raise ValidationError(_("Enter a time from %(first)s to %(last)s.",
                                first=EARLIEST, last=LATEST))

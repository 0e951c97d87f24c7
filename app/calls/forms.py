"""The history filter: a GET form (no CSRF: it changes nothing, and links must carry it)."""

from datetime import date

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional, ValidationError

from core.models import Call

# The days a filter may name. Every call is after 1970 (times are UNIX seconds), and
# the end of 9999-12-31 is past what a date can hold: `until` 9999-12-31 was a 500.
EARLIEST = date(1970, 1, 1)
LATEST = date(2999, 12, 31)

# Each of Call.DISPOSITIONS as the filter's list names it.
OUTCOMES = {"ANSWERED": _l("Answered"), "NO ANSWER": _l("No answer"), "BUSY": _l("Busy"),
            "FAILED": _l("Failed"), "CANCELLED": _l("Cancelled")}
DISPOSITION_CHOICES = [SelectChoice("", _l("Any outcome"))] + [
    SelectChoice(d, OUTCOMES[d]) for d in Call.DISPOSITIONS
]


class HistoryFilter(FlaskForm):
    class Meta:
        csrf = False

    extension = StringField(
        _l("Extension"), validators=[Optional(), Length(max=64)],
        filters=[lambda v: (v or "").strip()],
        render_kw={"inputmode": "numeric", "autocomplete": "off", "placeholder": _l("any")},
    )
    # "Date ...": beside the caller and callee columns, a bare "From / To" read as
    # the calling and called party.
    since = DateField(_l("Date from"), validators=[Optional()])
    until = DateField(_l("Date to"), validators=[Optional()])
    disposition = SelectField(_l("Outcome"), choices=DISPOSITION_CHOICES, default="",
                              validators=[Optional()])
    submit = SubmitField(_l("Filter"))

    def validate_since(self, field):
        _within_history(field.data)

    def validate_until(self, field):
        _within_history(field.data)
        if field.data and self.since.data and field.data < self.since.data:
            raise ValidationError(_("The end date is before the start date."))

    def args(self) -> dict[str, str]:
        """The filter as query parameters, for links to other pages and the CSV."""
        values = {
            "extension": self.extension.data or "",
            "since": self.since.data.isoformat() if self.since.data else "",
            "until": self.until.data.isoformat() if self.until.data else "",
            "disposition": self.disposition.data or "",
        }
        return {key: value for key, value in values.items() if value}


def _within_history(day: date | None) -> None:
    if day is not None and not EARLIEST <= day <= LATEST:
        raise ValidationError(_("Enter a date from %(first)s to %(last)s.",
                                first=EARLIEST, last=LATEST))

"""The IVR menu and business hours forms; the rules live in core/ivr.py and
core/hours.py (shared with pbxctl), used here as the fields' validators.

A menu's keys are one row per key (0-9, * and #), each with the destination
that key leads to; an empty row is no option. Business hours take their
opening rules one a line, as `pbxctl hours add --open` takes each.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    Form,
    FormField,
    IntegerField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.fields.list import FieldList
from wtforms.validators import InputRequired

from app.forms import core_rule
from app.i18n import LANGUAGES
from core import ivr

KEYS = ivr.DIGITS  # one row each, in this order


def _strip(value):
    return (value or "").strip()


def lines(text: str | None) -> list[str]:
    """A textarea's non-empty lines."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def days(text: str | None) -> list[str]:
    """Holidays as typed: one a line, or separated by spaces or commas."""
    return (text or "").replace(",", " ").split()


def _destination(label, placeholder="", validators=()):
    return StringField(
        label,
        filters=[_strip],
        validators=list(validators),
        render_kw={"autocomplete": "off", "class": "destination", "placeholder": placeholder},
    )


class KeyRow(Form):
    """One key of the menu (a subform: the page's one CSRF token covers it)."""

    destination = _destination(_l("Destination"))


class IvrForm(FlaskForm):
    name = StringField(
        _l("Name"),
        validators=[InputRequired(), core_rule(ivr.check_name)],
        filters=[_strip],
        render_kw={"autocomplete": "off", "placeholder": "main"},
    )
    number = StringField(
        _l("Number"),
        filters=[_strip],
        render_kw={"inputmode": "numeric", "autocomplete": "off", "placeholder": "700"},
    )
    prompt = FileField(_l("Recording"), render_kw={"accept": "audio/*,.wav"})
    keys = FieldList(FormField(KeyRow), min_entries=len(KEYS), max_entries=len(KEYS))
    timeout = IntegerField(
        _l("Seconds to wait for a key"),
        default=ivr.DEFAULT_TIMEOUT,
        validators=[InputRequired(), core_rule(ivr.check_timeout)],
        render_kw={"inputmode": "numeric", "min": ivr.TIMEOUT[0], "max": ivr.TIMEOUT[1]},
    )
    repeats = IntegerField(
        _l("Times the menu is said again"),
        default=ivr.DEFAULT_REPEATS,
        validators=[InputRequired(), core_rule(ivr.check_repeats)],
        render_kw={"inputmode": "numeric", "min": ivr.REPEATS[0], "max": ivr.REPEATS[1]},
    )
    on_timeout = _destination(_l("When no key is pressed"), _l("empty: goodbye"))
    on_invalid = _destination(_l("After wrong keys"), _l("empty: goodbye"))
    language = SelectField(
        _l("Language of the PBX's own prompts"),
        choices=[SelectChoice(code, LANGUAGES[code]) for code in ivr.LANGUAGES],
        default="en",
    )
    direct_dial = BooleanField(_l("Callers may dial an extension's or group's number"))
    submit = SubmitField(_l("Save"))

    def fill_keys(self, options: dict[str, str]) -> None:
        while len(self.keys):
            self.keys.pop_entry()
        for key in KEYS:
            self.keys.append_entry({"destination": options.get(key, "")})

    def options(self) -> dict[str, str]:
        """{key: destination} of the filled rows."""
        return {
            key: row.destination.data
            for key, row in zip(KEYS, self.keys, strict=False)
            if row.destination.data
        }

    def destination_fields(self):
        return [self.on_timeout, self.on_invalid, *(row.destination for row in self.keys)]


class EditIvrForm(IvrForm):
    """A menu's name is its destination (ivr:NAME) where others lead to it: it stays."""

    name = None


class HoursForm(FlaskForm):
    name = StringField(
        _l("Name"),
        validators=[InputRequired(), core_rule(ivr.check_name)],
        filters=[_strip],
        render_kw={"autocomplete": "off", "placeholder": "office"},
    )
    number = StringField(
        _l("Number"), filters=[_strip], render_kw={"inputmode": "numeric", "autocomplete": "off"}
    )
    rules = TextAreaField(
        _l("Open, one rule a line"),
        validators=[core_rule(lambda text: ivr.check_rules(lines(text)))],
        render_kw={
            "rows": 4,
            "class": "mono",
            "placeholder": "mon-fri 09:00-18:00\nsat 10:00-14:00",
        },
    )
    holidays = TextAreaField(
        _l("Holidays (closed all day)"),
        validators=[core_rule(lambda text: ivr.check_holidays(days(text)))],
        render_kw={"rows": 3, "class": "mono", "placeholder": "2027-01-01\n2027-03-21"},
    )
    in_destination = _destination(_l("While open"), "ivr:main", [InputRequired()])
    out_destination = _destination(_l("While closed"), "voicemail:1001", [InputRequired()])
    timezone = StringField(
        _l("Time zone"),
        filters=[_strip],
        validators=[core_rule(ivr.check_timezone)],
        render_kw={"autocomplete": "off"},
    )
    submit = SubmitField(_l("Save"))

    def destination_fields(self):
        return [self.in_destination, self.out_destination]


class EditHoursForm(HoursForm):
    name = None

"""The mailbox form; the rules live in core/voicemail.py (shared with pbxctl and sipd)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, PasswordField, SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice

from app.sounds.forms import AUDIO_ACCEPT


def _strip(value):
    return (value or "").strip()


LANGUAGE_CHOICES = [
    SelectChoice("", _l("Default (English)")),
    SelectChoice("en", _l("English")),
    SelectChoice("uz", _l("Uzbek")),
    SelectChoice("ru", _l("Russian")),
]


class MailboxForm(FlaskForm):
    enabled = BooleanField(_l("Voicemail on: callers who get no answer can leave a message"))
    pin = PasswordField(_l("New PIN (4 to 10 digits; leave empty to keep the current one)"),
                        filters=[_strip],
                        render_kw={"inputmode": "numeric", "autocomplete": "new-password"})
    email = StringField(_l("E-mail each new message to"), filters=[_strip],
                        render_kw={"type": "email", "autocomplete": "off"})
    language = SelectField(_l("Language of the prompts"), choices=LANGUAGE_CHOICES, default="")
    submit = SubmitField(_l("Save"))


class GreetingForm(FlaskForm):
    file = FileField(_l("Greeting"), validators=[FileRequired(_l("Choose a file to upload."))],
                     render_kw={"accept": AUDIO_ACCEPT})
    submit = SubmitField(_l("Upload"))

"""The upload forms; what a file must be is core/sounds.py's to say (sox reads it or not)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import SubmitField

# What the browser's file picker offers first; anything else may still be tried.
AUDIO_ACCEPT = "audio/*,.wav,.flac,.ogg,.oga,.mp3,.aiff,.au"


class PromptUploadForm(FlaskForm):
    file = FileField(_l("Recording"), validators=[FileRequired(_l("Choose a file to upload."))],
                     render_kw={"accept": AUDIO_ACCEPT})
    submit = SubmitField(_l("Upload"))


class MusicUploadForm(FlaskForm):
    file = FileField(_l("Music file"), validators=[FileRequired(_l("Choose a file to upload."))],
                     render_kw={"accept": AUDIO_ACCEPT})
    submit = SubmitField(_l("Add to the library"))

"""Lifting a ban: the address travels in the form, so CSRF covers it like any change."""

from flask_wtf import FlaskForm
from wtforms import HiddenField
from wtforms.validators import InputRequired, Length


class LiftForm(FlaskForm):
    address = HiddenField(validators=[InputRequired(), Length(max=64)])

"""Dropping a registration by hand: the binding's id travels in the form, so CSRF
covers it like any change (viewers cannot post: app/__init__.py)."""

from flask_wtf import FlaskForm
from wtforms import IntegerField
from wtforms.validators import InputRequired, NumberRange
from wtforms.widgets import HiddenInput


class DropForm(FlaskForm):
    binding = IntegerField(widget=HiddenInput(), validators=[InputRequired(), NumberRange(min=1)])

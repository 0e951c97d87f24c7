"""What the panel's forms share: core's rules as WTForms validators."""

from wtforms.validators import ValidationError

from app.filters import sentence, translated
from core.accounts import AccountError


def core_rule(check):
    """A WTForms validator from a core check that raises AccountError: its message,
    translated, is the field's error."""

    def validate(form, field):
        try:
            check(field.data)
        except AccountError as error:
            raise ValidationError(sentence(translated(error.args[0]))) from None

    return validate


def takes_upload(limit: int):
    """Mark a view that takes a file: it may read `limit` bytes, more than the panel's
    MAX_CONTENT_LENGTH (app/__init__.py _upload_limit). Put it under login_required,
    whose wrapper copies the mark."""

    def mark(view):
        view.max_upload = limit
        return view

    return mark

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

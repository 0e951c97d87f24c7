"""The ring group form; the rules themselves live in core/groups.py (shared with pbxctl).

Members are rows of (position, extension): the admin orders them by their
position numbers, which works with a keyboard, a screen reader and no script.
A row without an extension is ignored, so blank rows are there to add members.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import Form, FormField, IntegerField, RadioField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.fields.list import FieldList
from wtforms.validators import InputRequired, NumberRange, Optional

from app.forms import core_rule
from core.groups import MAX_MEMBERS, check_member_time, check_name, check_ring_time

# Blank rows under the members, to add some; "More rows" adds this many again.
BLANK_ROWS = 3
# Positions only order the rows; a group has a handful of members, not a thousand.
MAX_POSITION = 999
# Rows a form takes, blank ones included: more than a group may have members
# (core.groups.MAX_MEMBERS, which says so), few enough that a crafted POST cannot make
# the panel build thousands of subforms.
MAX_ROWS = MAX_MEMBERS + 2 * BLANK_ROWS

STRATEGY_CHOICES = [
    SelectChoice("ringall", _l("Ring all: every member's phones at once")),
    SelectChoice("hunt", _l("Hunt: one member after another, in order")),
]


def _strip(value):
    return (value or "").strip()


class MemberRow(Form):
    """One row of the members table (a subform: the page's one CSRF token covers it)."""

    position = IntegerField(
        _l("Position"),
        validators=[Optional(), NumberRange(min=1, max=MAX_POSITION)],
        render_kw={"inputmode": "numeric", "min": 1, "max": MAX_POSITION, "class": "position"},
    )
    extension = StringField(
        _l("Extension"), filters=[_strip],
        render_kw={"inputmode": "numeric", "autocomplete": "off", "class": "member"},
    )


class GroupForm(FlaskForm):
    number = StringField(
        _l("Number"), validators=[InputRequired()], filters=[_strip],
        render_kw={"inputmode": "numeric", "autocomplete": "off", "placeholder": "600"},
    )
    name = StringField(_l("Name"), filters=[_strip], validators=[core_rule(check_name)],
                       render_kw={"placeholder": _l("Sales")})
    strategy = RadioField(_l("Strategy"), choices=STRATEGY_CHOICES, default="ringall")
    ring_time = IntegerField(
        _l("Ring time (seconds)"), validators=[InputRequired(), core_rule(check_ring_time)],
        default=30,
        render_kw={"inputmode": "numeric", "min": 1},
    )
    member_time = IntegerField(
        _l("Seconds per member (hunt)"),
        validators=[InputRequired(), core_rule(check_member_time)], default=15,
        render_kw={"inputmode": "numeric", "min": 1},
    )
    fallback = StringField(
        _l("When nobody answers"), filters=[_strip],
        render_kw={"autocomplete": "off", "placeholder": _l("1003, 601 or hangup")},
    )
    members = FieldList(FormField(MemberRow), min_entries=BLANK_ROWS, max_entries=MAX_ROWS)
    more = SubmitField(_l("More rows"))
    submit = SubmitField(_l("Save"))

    def fill_members(self, numbers: list[str]) -> None:
        """Rows for `numbers` in order, then blank rows, positions counted from 1."""
        while len(self.members):
            self.members.pop_entry()
        for numbers_or_blank in [*numbers, *[""] * BLANK_ROWS][:MAX_ROWS]:
            self.members.append_entry(
                {"position": len(self.members) + 1, "extension": numbers_or_blank})

    def add_rows(self) -> None:
        last = max((row.position.data or 0 for row in self.members), default=0)
        for step in range(1, min(BLANK_ROWS, MAX_ROWS - len(self.members)) + 1):
            self.members.append_entry({"position": last + step, "extension": ""})

    def ordered_members(self) -> list[str]:
        """The extensions of the filled rows by position; rows without one keep their
        place after the numbered ones, and equal positions keep the rows' order."""
        filled = [(row.position.data, index, row.extension.data)
                  for index, row in enumerate(self.members) if row.extension.data]
        filled.sort(key=lambda item: (item[0] is None, item[0] or 0, item[1]))
        return [number for _, _, number in filled]


class EditGroupForm(GroupForm):
    """A group's number is what phones dial: it stays; a new number is a new group."""

    number = None

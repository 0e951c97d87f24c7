"""The forms of trunks, routes, the toll-fraud policy and an extension's outside calls;
the rules themselves live in core/trunks.py and core/outbound.py (shared with pbxctl).

A trunk's password field is write-only: WTForms' PasswordField never renders its
value, and on the edit form a blank one keeps the stored password.
An outbound route's trunks are rows of (position, trunk), ordered by position like
a ring group's members: it works with a keyboard, a screen reader and no script.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    Form,
    FormField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.fields.list import FieldList
from wtforms.validators import InputRequired, NumberRange, Optional

from app.forms import core_rule
from core import outbound
from core import trunks as trunk_rules

TRANSPORT_CHOICES = [SelectChoice("udp", "UDP"), SelectChoice("tcp", "TCP"),
                     SelectChoice("tls", "TLS")]
CALLER_ID_HEADER_CHOICES = [
    SelectChoice("from", _l("In From")),
    SelectChoice("pai", _l("In P-Asserted-Identity, From left alone")),
]
PERMISSION_CHOICES = [
    SelectChoice("internal", _l("Internal only: no outside calls")),
    SelectChoice("national", _l("National: the home country (and emergency numbers)")),
    SelectChoice("international", _l("International: also the allowed countries")),
]
MAX_POSITION = 999


def _strip(value):
    return (value or "").strip() if isinstance(value, str) or value is None else value


def _text(label, placeholder=None, **extra):
    render = {"autocomplete": "off"}
    if placeholder:
        render["placeholder"] = placeholder
    return StringField(label, filters=[_strip], render_kw=render, **extra)


class TrunkForm(FlaskForm):
    name = _text(_l("Name"), "acme",
                 validators=[InputRequired(), core_rule(trunk_rules.check_name)])
    host = _text(_l("Provider (host[:port])"), "sip.example.net",
                 validators=[InputRequired(), core_rule(trunk_rules.check_host)])
    transport = SelectField(_l("Transport"), choices=TRANSPORT_CHOICES, default="udp")
    register = BooleanField(_l("Register with the provider"))
    username = _text(_l("Username"), validators=[core_rule(trunk_rules.check_user)])
    auth_user = _text(_l("Authentication user (if not the username)"),
                      validators=[core_rule(trunk_rules.check_user)])
    password = PasswordField(_l("Password"), render_kw={"autocomplete": "new-password"})
    match = _text(_l("Addresses the provider calls from (CIDRs)"), "203.0.113.0/24",
                  validators=[core_rule(trunk_rules.check_match)])
    from_user = _text(_l("From user"), validators=[core_rule(trunk_rules.check_user)])
    from_domain = _text(_l("From domain"), validators=[core_rule(trunk_rules.check_domain)])
    caller_id = _text(_l("Caller ID"), "+998712001122",
                      validators=[core_rule(trunk_rules.check_caller_id)])
    caller_id_header = SelectField(_l("Caller ID sent"), choices=CALLER_ID_HEADER_CHOICES,
                                   default="from")
    max_calls = IntegerField(_l("Calls at once (0: the policy's limit)"), default=0,
                             validators=[InputRequired(), NumberRange(*trunk_rules.MAX_CALLS)],
                             render_kw={"inputmode": "numeric", "min": 0})
    outbound_proxy = _text(_l("Outbound proxy (host[:port])"))
    keepalive_interval = IntegerField(_l("Keep-alive OPTIONS every (seconds, 0: off)"),
                                      default=30,
                                      validators=[InputRequired(),
                                                  NumberRange(*trunk_rules.KEEPALIVE)],
                                      render_kw={"inputmode": "numeric", "min": 0})
    submit = SubmitField(_l("Save"))

    def values(self) -> dict:
        """What core.trunks takes; a blank password is not sent (kept on edit)."""
        values = {key: getattr(self, key).data for key in (
            "transport", "register", "username", "auth_user", "match", "from_user",
            "from_domain", "caller_id", "caller_id_header", "max_calls", "outbound_proxy",
            "keepalive_interval")}
        values["outbound_proxy"] = values["outbound_proxy"] or ""
        if self.password.data:
            values["password"] = self.password.data
        return values


class EditTrunkForm(TrunkForm):
    """A trunk's name is what routes and logs know it by: it stays."""

    name = None
    clear_password = BooleanField(_l("Remove the stored password"))


class InboundForm(FlaskForm):
    did = _text(_l("Number (DID)"), "998712001122",
                validators=[InputRequired(), core_rule(outbound.check_did)])
    destination = _text(_l("Destination"), _l("1001, 600 or hangup"),
                        validators=[InputRequired()])
    trunk = SelectField(_l("Trunk"), choices=[], validate_choice=False)
    record = BooleanField(_l("Record its calls"))
    submit = SubmitField(_l("Save"))


class TrunkRow(Form):
    """One row of an outbound route's trunks (a subform: the page's CSRF token covers it)."""

    position = IntegerField(
        _l("Position"), validators=[Optional(), NumberRange(min=1, max=MAX_POSITION)],
        render_kw={"inputmode": "numeric", "min": 1, "max": MAX_POSITION, "class": "position"},
    )
    trunk = SelectField(_l("Trunk"), choices=[], validate_choice=False,
                        render_kw={"class": "trunk"})


class OutboundForm(FlaskForm):
    name = _text(_l("Name"), _l("national"),
                 validators=[InputRequired(), core_rule(outbound.check_route_name)])
    patterns = TextAreaField(_l("Dial patterns, one per line"),
                             validators=[core_rule(outbound.check_patterns)],
                             render_kw={"rows": 4, "class": "mono",
                                        "placeholder": "9|0XXXXXXXX\n998+|XXXXXXXXX"})
    trunks = FieldList(FormField(TrunkRow), min_entries=1, max_entries=outbound.MAX_TRUNKS)
    caller_id = _text(_l("Caller ID"), validators=[core_rule(trunk_rules.check_caller_id)])
    emergency = BooleanField(_l("Emergency route"))
    record = BooleanField(_l("Record its calls"))
    position = IntegerField(_l("Position (1: tried first)"),
                            validators=[Optional(), NumberRange(min=1, max=MAX_POSITION)],
                            render_kw={"inputmode": "numeric", "min": 1})
    submit = SubmitField(_l("Save"))

    def fill_trunks(self, chosen: list[str], names: list[str]) -> None:
        """Rows for `chosen` in order, then blank rows up to one per trunk."""
        while len(self.trunks):
            self.trunks.pop_entry()
        rows = [*chosen, *[""] * max(1, len(names) - len(chosen))][:outbound.MAX_TRUNKS]
        for name in rows:
            self.trunks.append_entry({"position": len(self.trunks) + 1, "trunk": name})
        self.set_trunk_choices(names)

    def set_trunk_choices(self, names: list[str]) -> None:
        for row in self.trunks:
            row.trunk.choices = [("", "—"), *[(n, n) for n in names]]

    def ordered_trunks(self) -> list[str]:
        filled = [(row.position.data, index, row.trunk.data)
                  for index, row in enumerate(self.trunks) if row.trunk.data]
        filled.sort(key=lambda item: (item[0] is None, item[0] or 0, item[1]))
        return [name for _, _, name in filled]


def _limit(label, key, required=True):
    low, high = outbound.LIMITS[key]
    validators = [InputRequired() if required else Optional(), NumberRange(low, high)]
    return IntegerField(label, validators=validators,
                        render_kw={"inputmode": "numeric", "min": low, "max": high})


class PolicyForm(FlaskForm):
    home_country = _text(_l("Home country code"), "998",
                         validators=[core_rule(outbound.check_country)])
    allowed_countries = _text(_l("Other countries international extensions may call"),
                              "7, 44", validators=[core_rule(outbound.check_countries)])
    max_calls = _limit(_l("Outside calls at once per extension"), "max_calls")
    calls_per_hour = _limit(_l("Outside calls per extension per hour"), "calls_per_hour")
    minutes_per_hour = _limit(_l("Outside minutes per extension per hour"), "minutes_per_hour")
    trunk_max_calls = _limit(_l("Calls at once per trunk"), "trunk_max_calls")
    submit = SubmitField(_l("Save"))


class ExtensionOutboundForm(FlaskForm):
    permission = RadioField(_l("Outside calls"), choices=PERMISSION_CHOICES)
    caller_id = _text(_l("Caller ID"), validators=[core_rule(trunk_rules.check_caller_id)])
    max_calls = _limit(_l("Outside calls at once"), "max_calls", required=False)
    calls_per_hour = _limit(_l("Outside calls per hour"), "calls_per_hour", required=False)
    minutes_per_hour = _limit(_l("Outside minutes per hour"), "minutes_per_hour",
                              required=False)
    submit = SubmitField(_l("Save"))

"""Classify a dialled outside number and decide whether a caller may call it.

Pure: no database, no clock. decide.py calls classify() on the number as the
route rewrote it (after strip/prepend), then permit() with the caller's
Extension.outbound_permission and the OutboundPolicy's countries.

International numbers are recognised by their international prefix: "+"
(E.164 written form), "00" (ITU-T E.164 recommended prefix, most of the world)
or "810" (the ex-USSR prefix still dialled in Uzbekistan and Russia, where "8"
alone is the trunk prefix of a national call). Anything else is a national
number of the home country.
"""

from __future__ import annotations

from dataclasses import dataclass

# ITU-T E.164 country codes are prefix-free, so after the one- and two-digit
# codes below every other code is three digits (Annex to ITU-T Operational
# Bulletin No. 1114, "List of ITU-T Recommendation E.164 assigned country codes").
# A built-in table rather than `phonenumbers`: only the code is needed, not
# number validation, and the table changes on the scale of decades.
_ONE_DIGIT = frozenset({"1", "7"})
_TWO_DIGIT = frozenset(
    "20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58"
    " 60 61 62 63 64 65 66 81 82 84 86 90 91 92 93 94 95 98".split()
)
NATIONAL = "national"
INTERNATIONAL = "international"
EMERGENCY = "emergency"


@dataclass(frozen=True)
class Classification:
    kind: str  # national | international | emergency
    country: str  # E.164 country code ("998"); the home country for national; "" unknown
    e164: str  # "+998901112233" when known, else ""


@dataclass(frozen=True)
class Refusal:
    rule: str  # FraudEvent.rule: permission | country
    detail: str  # the words of the reason phrase and the log line


def country_code(digits: str) -> str:
    """The country code that `digits` (international form, no prefix) begins with;
    "" when there are too few digits to tell."""
    if digits[:1] in _ONE_DIGIT:
        return digits[:1]
    if digits[:2] in _TWO_DIGIT:
        return digits[:2]
    return digits[:3] if len(digits) >= 3 else ""


def international_digits(number: str) -> str | None:
    """The digits after an international prefix, or None for a national number."""
    if number.startswith("+"):
        return number[1:]
    if number.startswith("00"):
        return number[2:]
    if number.startswith("810"):
        return number[3:]
    return None


def classify(number: str, *, emergency: bool = False, home_country: str = "") -> Classification:
    """Classify `number` (after the route's rewrite). A number in the home
    country written internationally ("+998...") is national."""
    digits = international_digits(number)
    if emergency:
        kind = EMERGENCY
    elif digits is None:
        kind = NATIONAL
    else:
        kind = INTERNATIONAL
    if digits is None:
        country = home_country
        e164 = f"+{home_country}{number}" if home_country and number.isdigit() else ""
        return Classification(kind, country, e164)
    country = country_code(digits)
    if kind == INTERNATIONAL and home_country and country == home_country:
        kind = NATIONAL
    return Classification(kind, country, f"+{digits}" if digits.isdigit() else "")


def permit(
    extension: str,
    number: Classification,
    *,
    permission: str,
    home_country: str,
    allowed_countries: str,
) -> Refusal | None:
    """None when `extension` with Extension.outbound_permission `permission` may
    call `number`, else why not. Emergency calls are always allowed.
    allowed_countries: OutboundPolicy's comma-separated list of the codes
    besides the home country that international extensions may call."""
    if number.kind == EMERGENCY:
        return None
    if permission not in (NATIONAL, INTERNATIONAL):  # "internal", or anything unknown
        return Refusal("permission", f"outside calls not allowed for {extension}")
    if number.kind == NATIONAL:
        return None
    if permission != INTERNATIONAL:
        return Refusal("permission", f"international calls not allowed for {extension}")
    if not home_country:
        return Refusal("country", "international calls not allowed: no home country set")
    allowed = {code.strip().lstrip("+") for code in allowed_countries.split(",") if code.strip()}
    if number.country not in allowed:
        return Refusal("country", f"calls to +{number.country} not allowed for {extension}")
    return None

import pytest

from core.tolls import Refusal, classify, country_code, permit


@pytest.mark.parametrize(
    "number, emergency, home, kind, country, e164",
    [
        ("901112233", False, "998", "national", "998", "+998901112233"),
        ("+998901112233", False, "998", "national", "998", "+998901112233"),
        ("00998901112233", False, "998", "national", "998", "+998901112233"),
        ("810998901112233", False, "998", "national", "998", "+998901112233"),
        ("8901112233", False, "998", "national", "998", "+9988901112233"),
        ("+74951234567", False, "998", "international", "7", "+74951234567"),
        ("0012125551234", False, "998", "international", "1", "+12125551234"),
        ("810447911123456", False, "998", "international", "44", "+447911123456"),
        ("00992371234567", False, "998", "international", "992", "+992371234567"),
        ("+998901112233", False, "", "international", "998", "+998901112233"),
        ("901112233", False, "", "national", "", ""),
        ("112", True, "998", "emergency", "998", "+998112"),
        ("+12", False, "998", "international", "1", "+12"),
        ("+99", False, "998", "international", "", "+99"),
    ],
)
def test_classify(number, emergency, home, kind, country, e164):
    c = classify(number, emergency=emergency, home_country=home)
    assert (c.kind, c.country, c.e164) == (kind, country, e164)


@pytest.mark.parametrize(
    "digits, code",
    [("12125551234", "1"), ("74951234567", "7"), ("447911", "44"), ("998901", "998"),
     ("2012345", "20"), ("21312345", "213"), ("9", ""), ("35", "")],
)
def test_country_code(digits, code):
    assert country_code(digits) == code


NAT = classify("901112233", home_country="998")
RU = classify("+74951234567", home_country="998")
SOS = classify("112", emergency=True, home_country="998")


@pytest.mark.parametrize(
    "number, permission, home, allowed, refusal",
    [
        (NAT, "national", "998", "", None),
        (NAT, "international", "998", "", None),
        (NAT, "internal", "998", "", Refusal("permission", "outside calls not allowed for 1001")),
        (RU, "national", "998", "7", Refusal("permission", "international calls not allowed for 1001")),
        (RU, "international", "998", "7", None),
        (RU, "international", "998", "+7, 44", None),
        (RU, "international", "998", "44", Refusal("country", "calls to +7 not allowed for 1001")),
        (RU, "international", "", "7",
         Refusal("country", "international calls not allowed: no home country set")),
        (SOS, "internal", "998", "", None),
        (SOS, "bogus", "", "", None),
        (NAT, "bogus", "998", "", Refusal("permission", "outside calls not allowed for 1001")),
    ],
)
def test_permit(number, permission, home, allowed, refusal):
    got = permit("1001", number, permission=permission, home_country=home, allowed_countries=allowed)
    assert got == refusal

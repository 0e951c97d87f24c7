"""The routing step's Outside step (sipd/routing/decide.py, issue 12 items 3-4) as
tables: the caller's permission, the routes and the number dialled -> the trunks
tried with the number sent and the caller ID, or the refusal. The dial patterns
themselves are tabled in test_dial_patterns.py; here the route they belong to.
No sockets, no clock; StoreDirectory's routes on a real SQLite file at the end."""

from __future__ import annotations

import pytest

from core import accounts
from core.models import OutboundPolicy, OutboundRoute, OutboundRouteTrunk, Trunk
from sipd.routing.decide import decide
from sipd.routing.directory import PolicyView, RouteView, StoreDirectory, TableDirectory, TrunkView
from sipd.routing.plan import Event, Feature, Outside, Refuse, Ring, TrunkAttempt

NOW = 1_700_000_000.0

# The office of the cases: Uzbekistan (998), one extension of each permission.
ROUTES = [
    {"name": "emergency", "patterns": ["10[1-4]", "9|10[1-4]"], "trunks": ["acme"],
     "emergency": True},
    {"name": "mobile", "patterns": ["998+9|9[013-57-9]XXXXXXX"],
     "trunks": ["acme", {"name": "backup", "caller_id": "712000000"}],
     "caller_id": "712223344"},
    {"name": "international", "patterns": ["9|00."], "trunks": ["acme", "backup"]},
    {"name": "nowhere", "patterns": ["8|XXX"], "trunks": []},
]
POLICY = {"home_country": "998", "allowed_countries": "7, 49"}
EXTENSIONS = {
    "1001": {"outbound_permission": "international"},
    "1002": {"outbound_permission": "national", "outbound_caller_id": "712229999"},
    "1003": {"outbound_permission": "internal"},
    "1004": {"outbound_permission": "international", "forward_always": "9901234567"},
    "1005": {"outbound_permission": "national", "forward_always": "9004912345"},
}


def directory(routes=ROUTES, policy=POLICY, extensions=EXTENSIONS) -> TableDirectory:
    return TableDirectory(extensions, routes=routes, policy=policy)


def outside(dialled, route, *attempts, caller, emergency=False, events=()):
    return Outside(dialled, route, tuple(TrunkAttempt(*a) for a in attempts), caller,
                   emergency, events)


def fraud(status_words: str, by: str, dialled: str, rule: str, reason: str) -> Refuse:
    return Refuse(403, f"Forbidden: {status_words}", "FAILED", reason,
                  (Event("toll_fraud", by=by, target=dialled, detail=rule),))


CASES = [
    # A national mobile number, the leading 9 stripped and 998 prepended; caller ID:
    # the route's for the first trunk, the route's again for the second (the route
    # wins over the trunk), the extension's own when it has one.
    ("1001", "9901234567", outside(
        "9901234567", "mobile", ("acme", "998901234567", "712223344"),
        ("backup", "998901234567", "712223344"), caller="1001")),
    ("1002", "9901234567", outside(
        "9901234567", "mobile", ("acme", "998901234567", "712229999"),
        ("backup", "998901234567", "712229999"), caller="1002")),
    # The same number for an internal-only extension: refused, naming the rule.
    ("1003", "9901234567", fraud(
        "outside calls not allowed for 1003", "1003", "9901234567", "permission",
        "outside calls not allowed for 1003 (route mobile, 9901234567 sent as 998901234567)")),
    # International: 9 then 00, sent without the 9; Germany (49) is allowed ...
    ("1001", "9004930123456", outside(
        "9004930123456", "international", ("acme", "004930123456", ""),
        ("backup", "004930123456", ""), caller="1001")),
    # France (33) is not.
    ("1001", "900331234567", fraud(
        "calls to +33 not allowed for 1001", "1001", "900331234567", "country",
        "calls to +33 not allowed for 1001 (route international, 900331234567 sent as"
        " 00331234567)")),
    # A national extension dialling abroad.
    ("1002", "9004930123456", fraud(
        "international calls not allowed for 1002", "1002", "9004930123456", "permission",
        "international calls not allowed for 1002 (route international, 9004930123456 sent"
        " as 004930123456)")),
    # Emergency: for everybody, internal-only included, with or without the 9.
    ("1003", "103", outside("103", "emergency", ("acme", "103", ""), caller="1003",
                            emergency=True)),
    ("1003", "9102", outside("9102", "emergency", ("acme", "102", ""), caller="1003",
                             emergency=True)),
    # A caller that is no extension (nothing to permit it) still reaches emergency...
    ("trunk", "101", outside("101", "emergency", ("acme", "101", ""), caller="trunk",
                             emergency=True)),
    # ... but nothing else.
    ("trunk", "9901234567", fraud(
        "outside calls not allowed for trunk", "trunk", "9901234567", "permission",
        "outside calls not allowed for trunk (route mobile, 9901234567 sent as"
        " 998901234567)")),
    # A route without an enabled trunk: 503; no route at all: 404 as before.
    ("1001", "8123", Refuse(503, "Service Unavailable: no trunk for this number", "FAILED",
                            "outbound route nowhere has no enabled trunk")),
    ("1001", "55555", Refuse(404, "Not Found", "FAILED", "no such number")),
    ("1001", "9abc", Refuse(404, "Not Found", "FAILED", "no such number")),
]


@pytest.mark.parametrize(("caller", "dialled", "plan"), CASES,
                         ids=[f"{c[0]}->{c[1]}" for c in CASES])
def test_outside_numbers(caller, dialled, plan):
    assert decide(caller, dialled, directory(), NOW) == plan


def test_numbers_in_international_form():
    # '+' in a pattern is the prepend mark, so a route takes them with a wildcard.
    routes = [{"name": "any", "patterns": ["."], "trunks": ["acme"]}]
    plan = decide("1001", "+4930123456", directory(routes), NOW)
    assert plan.attempts == (TrunkAttempt("acme", "+4930123456"),)
    plan = decide("1002", "+4930123456", directory(routes), NOW)
    assert plan.phrase == "Forbidden: international calls not allowed for 1002"
    # The home country written internationally is a national call.
    plan = decide("1002", "+998901234567", directory(routes), NOW)
    assert plan.attempts == (TrunkAttempt("acme", "+998901234567", "712229999"),)


def test_first_route_wins():
    routes = [{"name": "first", "patterns": ["9|."], "trunks": ["one"]},
              {"name": "second", "patterns": ["9|0XXXXXXXX"], "trunks": ["two"]}]
    plan = decide("1001", "9012345678", directory(routes), NOW)
    assert (plan.route, plan.attempts) == ("first", (TrunkAttempt("one", "012345678"),))
    plan = decide("1001", "9012345678", directory(routes[::-1]), NOW)
    assert (plan.route, plan.attempts) == ("second", (TrunkAttempt("two", "012345678"),))


def test_a_malformed_pattern_does_not_stop_the_routes_after_it():
    routes = [{"name": "broken", "patterns": ["9|[0-"], "trunks": ["one"]},
              {"name": "good", "patterns": ["9|."], "trunks": ["two"]}]
    assert decide("1001", "9123", directory(routes), NOW).route == "good"


def test_without_a_home_country_nothing_international_is_allowed():
    plan = decide("1001", "9004930123456", directory(policy={}), NOW)
    assert plan.status == 403
    assert plan.phrase == "Forbidden: international calls not allowed: no home country set"
    assert plan.events[0].detail == "country"


def test_an_extension_number_is_never_sent_outside():
    routes = [{"name": "all", "patterns": ["."], "trunks": ["acme"]}]
    assert decide("1001", "1002", directory(routes), NOW) == Ring(("1002",), 30)


def test_a_forward_to_an_outside_number_is_the_forwarding_extensions_call():
    # 1004 (international) forwards always to a mobile: the call goes out for it,
    # whoever called; 1005 (national) forwards abroad: refused, for 1005.
    plan = decide("1003", "1004", directory(), NOW)
    assert isinstance(plan, Outside)
    assert (plan.caller, plan.route, plan.attempts[0].number) == ("1004", "mobile",
                                                                  "998901234567")
    assert plan.events[0] == Event("forwarded", by="1004", target="9901234567", detail="always")
    plan = decide("1001", "1005", directory(), NOW)
    assert plan.status == 403
    assert plan.phrase == "Forbidden: international calls not allowed for 1005"
    assert plan.events[-1] == Event("toll_fraud", by="1005", target="9004912345",
                                    detail="permission")


# -- StoreDirectory, on a real database ---------------------------------------------------


def test_the_store_reads_routes_in_order_with_their_enabled_trunks(database):
    accounts.create_extension("1001", "pbx.test", generate=True)
    acme = Trunk.create(name="acme", host="127.0.0.1", caller_id="711111111")
    backup = Trunk.create(name="backup", host="127.0.0.2")
    off = Trunk.create(name="off", host="127.0.0.3", enabled=False)
    second = OutboundRoute.create(name="second", position=2, patterns="9|.\n")
    first = OutboundRoute.create(name="first", position=1, patterns="9|0XXXXXXXX\n 998+|9X \n",
                                 caller_id="712223344", emergency=True)
    OutboundRoute.create(name="empty", position=3, patterns="X")
    OutboundRouteTrunk.create(route=first, trunk=backup, position=2)
    OutboundRouteTrunk.create(route=first, trunk=acme, position=1)
    OutboundRouteTrunk.create(route=second, trunk=off, position=1)
    OutboundRouteTrunk.create(route=second, trunk=backup, position=2)
    OutboundPolicy.insert(id=1, home_country="998", allowed_countries="7").on_conflict_replace(
    ).execute()
    store = StoreDirectory(NOW, lambda n: 0)
    assert store.routes() == (
        RouteView("first", ("9|0XXXXXXXX", "998+|9X"),
                  (TrunkView("acme", "711111111"), TrunkView("backup", "")),
                  "712223344", True),
        RouteView("second", ("9|.",), (TrunkView("backup", ""),)),
        RouteView("empty", ("X",), ()),
    )
    assert store.policy() == PolicyView("998", "7")
    assert store.extension("1001").outbound_permission == "national"  # the default
    plan = decide("1001", "9012345678", store, NOW)
    assert plan.attempts == (TrunkAttempt("acme", "012345678", "712223344"),
                             TrunkAttempt("backup", "012345678", "712223344"))


def test_star72_forwards_to_an_outside_number_an_outbound_route_takes():
    # As the panel's forward does (core/destinations.py): the calls it leads to are
    # permission-checked as the forwarding extension's when they are made (1004 above).
    plan = decide("1002", "*729901234567", directory(), NOW)
    assert isinstance(plan, Feature), plan
    assert (plan.code, plan.caller, plan.argument) == ("forward_on", "1002", "9901234567")
    plan = decide("1002", "*725551234", directory(), NOW)
    assert isinstance(plan, Refuse) and plan.phrase == (
        "Forbidden: 5551234 is no extension or ring group, and no outbound route takes it")

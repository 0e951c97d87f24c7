"""core/groups.py and core/forwarding.py, the operations pbxctl and the panel share,
on a real SQLite database: what they accept, what they refuse (with a message that
the panel can translate) and that a refusal changes nothing."""

from __future__ import annotations

import pytest

from core import accounts, extension_csv, forwarding, groups
from core.accounts import AccountError
from core.models import Extension, RingGroup, RingGroupMember, db
from sipd import dblock

REALM = "pbx.test"


@pytest.fixture
def office(database):
    for number in ("1001", "1002", "1003", "1004"):
        accounts.create_extension(number, REALM, name=f"Desk {number}", generate=True)
    return database


def snapshot() -> tuple:
    """Everything these operations may write, to show that a refusal wrote nothing."""
    return (
        list(RingGroup.select().order_by(RingGroup.id).tuples()),
        list(RingGroupMember.select().order_by(RingGroupMember.id).tuples()),
        list(Extension.select(Extension.number, Extension.dnd, Extension.forward_always,
                              Extension.forward_busy, Extension.forward_no_answer,
                              Extension.forward_no_answer_after,
                              Extension.forward_unavailable).order_by(Extension.id).tuples()),
    )


def refused(function, *args, **kwargs) -> str:
    before = snapshot()
    with pytest.raises(AccountError) as caught:
        function(*args, **kwargs)
    assert snapshot() == before
    return str(caught.value)


# -- ring groups ------------------------------------------------------------------------


def test_a_group_keeps_its_members_in_order(office):
    group = groups.create_group("600", "Sales", ["1003", "1001", "1002"], strategy="hunt",
                                ring_time=40, member_time=10, fallback="1004")
    assert (group.number, group.name, group.strategy, group.ring_time, group.member_time,
            group.fallback) == ("600", "Sales", "hunt", 40, 10, "1004")
    assert group.member_numbers() == ["1003", "1001", "1002"]
    assert [g.number for g in groups.list_groups()] == ["600"]
    assert groups.get_group(" 600 ").number == "600"


def test_defaults_are_ringall_for_30_s(office):
    group = groups.create_group("600", "Sales", ["1001"])
    assert (group.strategy, group.ring_time, group.member_time, group.fallback) == (
        "ringall", 30, 15, "")


def test_a_fallback_may_be_another_group_or_hangup(office):
    groups.create_group("600", "Sales", ["1001"])
    assert groups.create_group("601", "Support", ["1002"], fallback="600").fallback == "600"
    assert groups.create_group("602", "Night", ["1002"], fallback="HANGUP").fallback == "hangup"


@pytest.mark.parametrize(("number", "name", "members", "options", "says"), [
    ("1001", "Sales", ["1002"], {},
     "1001 is an extension; a ring group needs a number of its own"),
    ("6", "Sales", ["1002"], {}, "ring group number '6' must be 2 to 15 digits"),
    ("6x0", "Sales", ["1002"], {}, "ring group number '6x0' must be 2 to 15 digits"),
    ("600", "", ["1002"], {}, "a ring group needs a name"),
    ("600", "Sales", [], {}, "a ring group needs at least one member"),
    ("600", "Sales", ["", " "], {}, "a ring group needs at least one member"),
    ("600", "Sales", ["1002", "1009"], {}, "member 1009 is not an extension"),
    ("600", "Sales", ["1002", "1001", "1002"], {}, "1002 is a member twice"),
    ("600", "Sales", ["600"], {}, "ring group 600 cannot be its own member"),
    ("600", "Sales", ["1002"], {"strategy": "random"},
     "strategy must be ringall or hunt, got 'random'"),
    ("600", "Sales", ["1002"], {"ring_time": 4}, "ring time must be 5 to 300 seconds, got '4'"),
    ("600", "Sales", ["1002"], {"ring_time": "301"},
     "ring time must be 5 to 300 seconds, got '301'"),
    ("600", "Sales", ["1002"], {"ring_time": "ten"},
     "ring time must be 5 to 300 seconds, got 'ten'"),
    ("600", "Sales", ["1002"], {"member_time": 121},
     "time per member must be 5 to 120 seconds, got '121'"),
    ("600", "Sales", ["1002"], {"fallback": "600"}, "ring group 600 cannot fall back to itself"),
    ("600", "Sales", ["1002"], {"fallback": "1999"},
     "1999 is no extension or ring group, and no outbound route takes it"),
    ("600", "Sales", ["1002"], {"fallback": "voicemail"},
     "'voicemail' is not a destination: give an extension or ring group number, an outside number, voicemail:NUMBER, ivr:NAME, hours:NAME or hangup"),
])
def test_a_bad_group_is_refused_and_nothing_is_written(office, number, name, members, options,
                                                        says):
    assert refused(groups.create_group, number, name, members, **options) == says


def test_a_group_number_is_taken_once(office):
    groups.create_group("600", "Sales", ["1001"])
    assert refused(groups.create_group, "600", "Other", ["1002"]) == (
        "ring group 600 already exists")


def test_an_error_keeps_its_message_for_the_panel(office):
    with pytest.raises(AccountError) as caught:
        groups.create_group("600", "Sales", ["1009"])
    text = caught.value.args[0]
    assert (text.message, text.values) == ("member %(number)s is not an extension",
                                           {"number": "1009"})


def test_update_changes_only_what_is_given(office):
    groups.create_group("600", "Sales", ["1001", "1002"], ring_time=40)
    group = groups.update_group("600", members=["1003", "1001"], strategy="hunt")
    assert group.member_numbers() == ["1003", "1001"]
    assert (group.name, group.strategy, group.ring_time) == ("Sales", "hunt", 40)
    group = groups.update_group("600", name="Sales desk", fallback="1004", member_time="20")
    assert (group.name, group.fallback, group.member_time) == ("Sales desk", "1004", 20)
    assert groups.update_group("600", fallback="").fallback == ""
    assert group.member_numbers() == ["1003", "1001"]


def test_a_bad_update_changes_nothing(office):
    groups.create_group("600", "Sales", ["1001", "1002"])
    assert refused(groups.update_group, "600", name="New", members=["1001", "1009"]) == (
        "member 1009 is not an extension")
    assert refused(groups.update_group, "600", members=[]) == (
        "a ring group needs at least one member")
    assert refused(groups.update_group, "601", name="New") == "no ring group 601"


def test_deleting_a_group_clears_what_led_to_it(office):
    groups.create_group("600", "Sales", ["1001", "1002"])
    groups.create_group("601", "Support", ["1003"], fallback="600")
    forwarding.set_forward("1004", "busy", "600")
    cleared = groups.delete_group("600")
    assert cleared == ["forward on busy of 1004", "fallback of ring group 601"]
    assert RingGroup.by_number("600") is None
    assert RingGroupMember.select().count() == 1
    assert Extension.by_number("1004").forward_busy == ""
    assert RingGroup.by_number("601").fallback == ""


def test_an_extension_cannot_take_a_group_number(office):
    groups.create_group("600", "Sales", ["1001"])
    with pytest.raises(AccountError, match="^600 is a ring group's number$"):
        accounts.create_extension("600", REALM, generate=True)
    rows = [(2, ["1005", "", ""]), (3, ["600", "", ""])]
    with pytest.raises(extension_csv.CsvImportError, match="row 3: 600 is a ring group's"):
        extension_csv.check(rows, REALM, extension_csv.existing_numbers(), "ext.csv",
                            groups=extension_csv.group_numbers())


def test_an_import_meeting_a_new_group_writes_nothing(office):
    rows = [(2, ["1005", "", ""]), (3, ["600", "", ""])]
    ready = extension_csv.check(rows, REALM, extension_csv.existing_numbers(), "ext.csv")
    groups.create_group("600", "Sales", ["1001"])  # between the check and the write
    with pytest.raises(extension_csv.CsvImportError, match="row 3: 600 became a ring group"):
        extension_csv.write(ready, "cli:test", "local", "ext.csv")
    assert Extension.by_number("1005") is None


# -- deleting an extension that groups and forwards lead to -----------------------------


def test_a_deleted_extension_leaves_its_groups_and_forwards_to_it_are_cleared(office):
    groups.create_group("600", "Sales", ["1001", "1002", "1003"])
    groups.create_group("601", "Support", ["1003"], fallback="1002")
    forwarding.set_forward("1001", "no_answer", "1002")
    forwarding.set_forward("1003", "always", "1002")
    changed = accounts.delete_extension("1002")
    assert changed == ["left ring group 600 (Sales)", "forward always of 1003",
                       "forward on no answer of 1001", "fallback of ring group 601"]
    assert RingGroup.by_number("600").member_numbers() == ["1001", "1003"]
    assert Extension.by_number("1001").forward_no_answer == ""
    assert Extension.by_number("1003").forward_always == ""
    assert RingGroup.by_number("601").fallback == ""


def test_the_only_member_of_a_group_is_not_deleted(office):
    groups.create_group("600", "Sales", ["1001", "1002"])
    groups.create_group("601", "Night", ["1002"])
    forwarding.set_forward("1001", "busy", "1002")
    assert refused(accounts.delete_extension, "1002") == (
        "extension 1002 is the only member of ring group 601 (Night): add another member or"
        " delete the group first")
    assert Extension.by_number("1002") is not None


# -- forwarding and DND -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["always", "busy", "no_answer", "unavailable", "no-answer"])
def test_each_kind_of_forward(office, kind):
    extension = forwarding.set_forward("1001", kind, "1002")
    field = "forward_" + kind.replace("-", "_")
    assert getattr(extension, field) == "1002"
    assert forwarding.forwards(extension) == {kind.replace("-", "_"): "1002"}


def test_a_forward_to_a_group_or_hangup(office):
    groups.create_group("600", "Sales", ["1002"])
    assert forwarding.set_forward("1001", "busy", "600").forward_busy == "600"
    assert forwarding.set_forward("1001", "always", "hangup").forward_always == "hangup"


def test_no_answer_after_seconds(office):
    extension = forwarding.set_forward("1001", "no_answer", "1002", after=25)
    assert (extension.forward_no_answer, extension.forward_no_answer_after) == ("1002", 25)
    assert forwarding.describe(extension) == "no answer (25 s) -> 1002"
    # Without `after` the time set before stays.
    assert forwarding.set_forward("1001", "no_answer", "1003").forward_no_answer_after == 25


@pytest.mark.parametrize(("number", "kind", "destination", "after", "says"), [
    ("1001", "always", "1001", None, "1001 cannot forward to itself"),
    ("1001", "busy", "1999", None, "1999 is no extension or ring group, and no outbound route takes it"),
    ("1001", "busy", "", None, "give the destination to forward to"),
    ("1001", "busy", "mobile", None,
     "'mobile' is not a destination: give an extension or ring group number, an outside number, voicemail:NUMBER, ivr:NAME, hours:NAME or hangup"),
    ("1001", "sometimes", "1002", None,
     "kind of forward must be always, busy, no-answer or unavailable, got 'sometimes'"),
    ("1001", "no_answer", "1002", 4, "no-answer time must be 5 to 120 seconds, got '4'"),
    ("1001", "no_answer", "1002", "121", "no-answer time must be 5 to 120 seconds, got '121'"),
    ("1001", "busy", "1002", 20, "a ring time applies only to the no-answer forward"),
    ("1999", "busy", "1002", None, "no extension 1999"),
])
def test_a_bad_forward_is_refused_and_nothing_is_written(office, number, kind, destination,
                                                          after, says):
    assert refused(forwarding.set_forward, number, kind, destination, after=after) == says


def test_clearing_one_forward_or_all(office):
    for kind in forwarding.KINDS:
        forwarding.set_forward("1001", kind, "1002")
    extension = forwarding.clear_forward("1001", "busy")
    assert list(forwarding.forwards(extension)) == ["always", "no_answer", "unavailable"]
    assert forwarding.forwards(forwarding.clear_forward("1001")) == {}
    assert refused(forwarding.clear_forward, "1001", "never").startswith("kind of forward")


def test_dnd_on_and_off(office):
    assert forwarding.set_dnd("1001", True).dnd is True
    assert forwarding.describe(Extension.by_number("1001")) == "DND"
    assert forwarding.set_dnd("1001", False).dnd is False
    assert refused(forwarding.set_dnd, "1999", True) == "no extension 1999"


def test_inside_sipds_own_transaction_the_change_joins_it(office):
    """sipd takes the write lock on its loop (sipd/dblock.py) and calls core inside:
    the change is part of that transaction, committed or rolled back with it."""
    conn = db.connection()
    with pytest.raises(RuntimeError), dblock.transaction(conn):
        forwarding.set_dnd("1001", True)
        raise RuntimeError("the rest of sipd's transaction failed")
    assert Extension.by_number("1001").dnd is False
    with dblock.transaction(conn):
        forwarding.set_forward("1001", "always", "1002")
    assert not conn.in_transaction
    assert Extension.by_number("1001").forward_always == "1002"

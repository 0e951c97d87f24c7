"""A call an application handed on to a number, once the phone answered: a
bridged call like any other (sipd/b2bua/handover.py step 2). The caller's BYE
ends the callee's leg too, and an extension that records its calls is recorded
(a tap on the relay session, after the endpoint left leg A). Same harness and
phones as tests/unit/test_b2bua_app_handover.py.
"""

from __future__ import annotations

import pytest

from core import recording
from sipd.routing.plan import Application
from tests.unit.b2bua_harness import make_pbx, register, request
from tests.unit.test_b2bua_app_handover import (
    CALLEE_SDP,
    CALLER,
    GROUP,
    PHONES,
    EndpointRelay,
    dial_menu,
    plan,
    respond,
    sent_to,
    to_caller,
)


@pytest.fixture
def pbx(tmp_path):
    relay = EndpointRelay()
    made = make_pbx(tmp_path, numbers=("1001", "1002", "1003"),
                    route=plan({"500": Application("menu", ""), "600": GROUP}), relay=relay,
                    spawn=lambda function, *args: function(*args),
                    recording_dir=str(tmp_path / "recordings"))
    made.calls.applications.apps = {"menu": lambda call: call.continue_to("600")}
    for number in ("1001", "1002"):
        register(made, made.sent, number, PHONES[number])
    made.sent.clear()
    made.relay = relay
    yield made
    made.stack.database.close()


def test_the_callers_bye_after_the_answer_ends_the_callees_leg(pbx):
    tag = dial_menu(pbx)
    respond(pbx, "1001", "200 OK", CALLEE_SDP)
    assert to_caller(pbx) == [200]
    pbx.handle(request("BYE", 3, "bye", to_tag=f";tag={tag}", number="1003", source=CALLER,
                       target="500"), CALLER)
    assert len(sent_to(pbx, "1001", "BYE")) == 1
    assert sent_to(pbx, "1002", "BYE") == []  # CANCELled at the answer, no dialog
    assert pbx.calls.calls == {} and pbx.calls.per_extension == {}
    (row,) = pbx.rows()
    assert (row["disposition"], row["hangup_by"], row["answered_by"]) == (
        "ANSWERED", "caller", "1001")


def test_an_extension_that_records_its_calls_is_recorded_once_bridged(pbx):
    recording.set_record("1001", True)
    dial_menu(pbx)
    assert "tap" not in [op for op, _ in pbx.relay.ops]  # the menu and ringback: not recorded
    respond(pbx, "1001", "200 OK", CALLEE_SDP)
    ops = [op for op, _ in pbx.relay.ops]
    assert ops[-2:] == ["detach", "tap"]  # the endpoint leaves leg A before the tap
    path = pbx.relay.ops[-1][1]["path"]
    (row,) = pbx.rows()
    assert row["recording"] and path.endswith(row["recording"])

"""The state machine, as short scripts: feed events, assert the whole state."""

import pytest

from agent.machine import TRANSITIONS, IllegalTransition, Machine


def test_happy_path_visits_every_state_in_order():
    m = Machine()
    for event in ("route", "open", "finish", "complete"):
        m.fire(event)
    assert m.state == "done" and m.finished
    assert [(e, a, b) for _, e, a, b in m.trace] == [
        ("route", "received", "routed"),
        ("open", "routed", "streaming"),
        ("finish", "streaming", "finalizing"),
        ("complete", "finalizing", "done"),
    ]
    times = [t for t, *_ in m.trace]
    assert times == sorted(times)


@pytest.mark.parametrize("events, final", [
    (["route", "open", "fail"], "failed"),
    (["route", "open", "finish", "fail"], "failed"),
    (["route", "cancel"], "cancelled"),
    (["route", "open", "cancel"], "cancelled"),
    (["fail"], "failed"),
    (["route", "open", "finish", "repair", "fail"], "failed"),
    (["route", "open", "finish", "repair", "cancel"], "cancelled"),
])
def test_failure_and_cancel_from_any_live_state(events, final):
    m = Machine()
    for event in events:
        m.fire(event)
    assert m.state == final and m.finished


@pytest.mark.parametrize("events, illegal", [
    ([], "open"),
    (["route"], "finish"),
    (["route", "open"], "complete"),
    (["route", "open", "finish", "complete"], "fail"),
    (["route", "cancel"], "route"),
    (["route", "open"], "warp"),
    (["route", "open"], "repair"),
    (["route", "open", "finish", "repair"], "finish"),
    (["route", "open", "finish", "repair"], "complete"),
])
def test_illegal_event_raises_naming_state_and_event_and_changes_nothing(events, illegal):
    m = Machine()
    for event in events:
        m.fire(event)
    state, trace = m.state, list(m.trace)
    with pytest.raises(IllegalTransition) as info:
        m.fire(illegal)
    assert info.value.state == state and info.value.event == illegal
    assert repr(state) in str(info.value) and repr(illegal) in str(info.value)
    assert m.state == state and m.trace == trace


def test_terminal_states_have_no_way_out():
    for (state, _event) in TRANSITIONS:
        assert state not in ("done", "failed", "cancelled")


def test_a_repair_round_goes_back_to_streaming_and_then_completes():
    m = Machine()
    for event in ("route", "open", "finish", "repair", "open", "finish", "complete"):
        m.fire(event)
    assert m.state == "done"
    assert [(e, a, b) for _, e, a, b in m.trace] == [
        ("route", "received", "routed"),
        ("open", "routed", "streaming"),
        ("finish", "streaming", "finalizing"),
        ("repair", "finalizing", "repairing"),
        ("open", "repairing", "streaming"),
        ("finish", "streaming", "finalizing"),
        ("complete", "finalizing", "done"),
    ]

"""The journey language and its pure state machine, with no server anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenure.journeys.machine import (
    JourneyInput,
    JourneyState,
    Resolved,
    Seen,
    Start,
    TimerFired,
    simulate,
    step,
)
from tenure.journeys.spec import JourneyError, load_journey, parse_journey

EXAMPLES = Path(__file__).parents[2] / "src" / "tenure" / "journeys" / "builtin"
DAY = 86_400.0
OFFER = load_journey(EXAMPLES / "offer-reminder-expiry.yaml")
DESK = load_journey(EXAMPLES / "save-desk.yaml")
INP = JourneyInput("d1", "c1", "winback", "email", cost=4.0, policy_id="p")


def kinds(commands):
    return [(c.kind, c.step) for c in commands]


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"id": "x", "kind": "sned"}], "does not match any of the expected tags"),
        (
            [
                {"id": "w", "kind": "wait", "for": ["channel.opened"]},
                {"id": "e", "kind": "exit", "outcome": "o"},
            ],
            "needs a timeout",
        ),
        (
            [
                {"id": "s", "kind": "send", "template": "t", "next": "nope"},
                {"id": "e", "kind": "exit", "outcome": "o"},
            ],
            "unknown step 'nope'",
        ),
        (
            [
                {"id": "s", "kind": "send", "template": "t", "next": "e"},
                {"id": "lost", "kind": "exit", "outcome": "x"},
                {"id": "e", "kind": "exit", "outcome": "o"},
            ],
            "unreachable steps (nothing leads to them): ['lost']",
        ),
        (
            [
                {"id": "s", "kind": "send", "template": "t", "next": "g"},
                {"id": "g", "kind": "grant", "offer": "o", "next": "s"},
            ],
            "loop without waiting",
        ),
        (
            [
                {"id": "b", "kind": "branch", "when": "seen ==", "then": "e", "else": "e"},
                {"id": "e", "kind": "exit", "outcome": "o"},
            ],
            "step 'b' field 'when'",
        ),
        (
            [{"id": "g", "kind": "grant"}, {"id": "e", "kind": "exit", "outcome": "o"}],
            "exactly one of",
        ),
    ],
)
def test_invalid_journeys_name_the_step_and_the_problem(steps, message):
    with pytest.raises(JourneyError) as err:
        parse_journey({"id": "j", "steps": steps}, "j.yaml")
    assert message in str(err.value)
    assert "j.yaml" in str(err.value)


def test_bare_on_key_in_yaml_means_the_field_on():
    wait = OFFER.step("wait-first")
    assert wait.on == {"channel.redeemed": "redeemed", "subscription.cancelled": "lost"}


def test_unused_offer_is_reminded_then_revoked_with_its_budget_released():
    state, commands = simulate(OFFER, INP, 0.0)
    assert state.outcome == "expired"
    assert kinds(commands) == [
        ("grant", "grant-offer"),
        ("deliver", "send-offer"),
        ("deliver", "remind"),
        ("compensate", "revoke"),
    ]
    undo = commands[-1]
    assert undo.grants == ("d1:grant-offer:1",)
    assert undo.release == 4.0
    assert state.history[-1]["at"].startswith("1970-01-08")  # day 3 + 4 more days


def test_redeemed_offer_takes_the_other_branch_and_keeps_its_budget():
    state, commands = simulate(OFFER, INP, 0.0, [Seen(4 * DAY, "channel.redeemed", "e1")])
    assert state.outcome == "redeemed"
    assert ("compensate", "revoke") not in kinds(commands)
    early, early_cmds = simulate(OFFER, INP, 0.0, [Seen(DAY, "channel.redeemed", "e1")])
    assert early.outcome == "redeemed"
    assert ("deliver", "remind") not in kinds(early_cmds)


def test_events_not_waited_for_duplicates_and_stale_timers_change_nothing():
    state, _ = step(OFFER, INP, JourneyState(), Start(0.0))
    pause = state.pause
    same, cmds = step(OFFER, INP, state, Seen(10.0, "channel.opened", "x"))
    assert cmds == [] and same.pause == pause and same.seen == {"channel.opened": 1}
    again, cmds = step(OFFER, INP, same, Seen(11.0, "channel.opened", "x"))
    assert again == same and cmds == []
    stale, cmds = step(OFFER, INP, same, TimerFired(12.0, "wait-second", 1))
    assert stale == same and cmds == []


def test_deferred_delivery_waits_for_the_end_of_quiet_hours():
    inp = JourneyInput("d2", "c1", "a", "sms", deliver_at=8 * 3600.0)
    state, cmds = step(OFFER, inp, JourneyState(), Start(0.0))
    assert cmds == [] and state.pause.kind == "delay"
    state, cmds = step(OFFER, inp, state, TimerFired(8 * 3600.0, "grant-offer", 0))
    assert kinds(cmds) == [("grant", "grant-offer"), ("deliver", "send-offer")]
    assert cmds[1].channel == "sms"


def test_human_task_resolution_and_escalation():
    state, cmds = simulate(DESK, INP, 0.0, [Resolved(3600.0, "d1:call:1", "saved", "ann")])
    assert state.outcome == "saved" and kinds(cmds) == [("task", "call"), ("deliver", "thank")]
    state, cmds = simulate(DESK, INP, 0.0)
    assert state.outcome == "lost"
    assert kinds(cmds) == [
        ("task", "call"),
        ("expire", "call"),
        ("task", "escalate"),
        ("expire", "escalate"),
        ("ticket", "ticket"),
    ]
    # A resolution of the first task after it escalated is ignored.
    late, _ = simulate(DESK, INP, 0.0, [Resolved(2 * DAY, "d1:call:1", "saved")])
    assert late.outcome == "lost"


def test_state_survives_its_record_form():
    state, _ = simulate(OFFER, INP, 0.0, [Seen(DAY, "channel.opened", "o1")], horizon=2 * DAY)
    assert JourneyState.from_record(state.to_record()) == state


EVENT_TYPES = ["channel.redeemed", "channel.opened", "subscription.cancelled", "purchase"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 10 * DAY), st.sampled_from(EVENT_TYPES), st.integers(0, 5)),
        max_size=12,
    )
)
def test_any_event_history_ends_once_with_unique_keys_and_no_double_revoke(raw):
    events = [Seen(at, t, f"e{i}") for at, t, i in raw]
    state, commands = simulate(OFFER, INP, 0.0, events)
    assert state.status == "completed"
    keys = [c.key for c in commands]
    assert len(keys) == len(set(keys))
    assert sum(c.kind == "compensate" for c in commands) <= 1
    if state.outcome == "redeemed":
        assert not any(c.kind == "compensate" for c in commands)
    # Deterministic: the same history gives the same journey.
    assert simulate(OFFER, INP, 0.0, events) == (state, commands)

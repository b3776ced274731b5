"""Outcomes and lift: the intervals are the textbook ones and the grouping is per version/action."""

from __future__ import annotations

import datetime as dt
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from tenure.policy.lift import (
    Decided,
    History,
    difference_ci,
    evidence_by_policy,
    outcome,
    report,
    wilson,
)

T = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def test_wilson_matches_known_values() -> None:
    low, high = wilson(10, 100)
    assert math.isclose(low, 0.0552, abs_tol=1e-4) and math.isclose(high, 0.1744, abs_tol=1e-4)
    assert wilson(0, 20)[0] == 0.0 and wilson(20, 20)[1] == 1.0
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_difference_interval_contains_the_difference() -> None:
    low, high = difference_ci(10, 100, 30, 100)  # p2 - p1 = 0.2
    assert low < 0.2 < high and low > 0  # clearly different
    low, high = difference_ci(10, 100, 12, 100)
    assert low < 0 < high  # not distinguishable


def test_outcome_windows() -> None:
    later = T + dt.timedelta(days=40)
    assert outcome(T, [T + dt.timedelta(days=5)], later, 30) == "churned"
    assert outcome(T, [T - dt.timedelta(days=5)], later, 30) == "saved"  # cancelled before: not
    assert outcome(T, [], T + dt.timedelta(days=10), 30) == "unknown"


def test_report_compares_each_action_with_its_policy_versions_control() -> None:
    decided = [Decided(f"t{i}", T, "p", "h1", "email", 1.0) for i in range(100)]
    decided += [Decided(f"c{i}", T, "p", "h1", None, 0.0) for i in range(100)]
    decided += [Decided(f"x{i}", T, "p", "h2", "email", 1.0) for i in range(10)]
    cancels = {f"t{i}": [T + dt.timedelta(days=3)] for i in range(10)}
    cancels |= {f"c{i}": [T + dt.timedelta(days=3)] for i in range(30)}
    rows = report(decided, cancels, T + dt.timedelta(days=60), 30)
    by_version = {r["policy_version"]: r for r in rows}
    first = by_version["h1"]
    assert first["treated"]["churn_rate"] == 0.1 and first["control"]["churn_rate"] == 0.3
    assert first["lift"]["churn_reduction"] == 0.2 and first["lift"]["saved"] == 20.0
    assert first["lift"]["cost_per_saved"] == 5.0 and first["lift"]["ci95"][0] > 0
    assert by_version["h2"]["control"]["customers"] == 0
    assert by_version["h2"]["lift"]["churn_reduction"] is None


# Decisions a history may hold, and what happens to it next: a decision (one of those, by
# index) or a cancellation (customer, day); and the days evidence is asked at.
DECISIONS = st.lists(
    st.tuples(
        st.integers(0, 2),  # customer
        st.integers(0, 60),  # day decided
        st.sampled_from([None, "a", "b"]),  # action (None: control)
    ),
    min_size=1,
    max_size=20,
)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("decide"), st.integers(0, 24)),
        st.tuples(st.just("cancel"), st.integers(0, 2), st.integers(0, 100)),
    ),
    max_size=20,
)
ASKED = st.lists(st.sampled_from([0, 15, 31, 45, 62, 75, 91, 120]), min_size=1, max_size=4)


@settings(max_examples=150, deadline=None)
@given(decisions=DECISIONS, steps=STEPS, asked=ASKED)
def test_the_histories_cached_evidence_is_always_what_a_full_count_gives(
    decisions: list[tuple[int, int, str | None]], steps: list[tuple], asked: list[int]
) -> None:
    """Evidence is cached while the same outcomes are known; asked at any instants, before and
    after each new decision or cancellation, it equals the evidence counted from scratch."""
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def made(i: int) -> Decided:
        cust, day, action = decisions[i % len(decisions)]
        return Decided(f"c{cust}", t0 + dt.timedelta(days=day, hours=i), "p", "h", action, 1.0)

    history = History([made(i) for i in range(len(decisions) // 2)], {}, {})
    for step in [("start",), *steps]:
        if step[0] == "decide":
            history.add_decision(made(step[1]))
        elif step[0] == "cancel":
            history.add_cancellation(f"c{step[1]}", t0 + dt.timedelta(days=step[2], hours=7))
        for day in asked:
            at = t0 + dt.timedelta(days=day)
            before = [d for d in history.decided if d.decided_at < at]
            assert history.evidence_at(at) == (
                evidence_by_policy(before, history.cancellations, at, 30.0, {}) if before else {}
            )


@settings(max_examples=100, deadline=None)
@given(decisions=DECISIONS, steps=STEPS, cut=st.integers(0, 20), asked=ASKED)
def test_a_rolled_back_batch_leaves_the_history_as_before_it(
    decisions: list[tuple[int, int, str | None]], steps: list[tuple], cut: int, asked: list[int]
) -> None:
    """What a batch that did not commit added (decisions and cancellations, after
    `savepoint`) is gone after `rollback`: the history then equals one that never saw it, in
    its records and in the evidence it gives at any instant, cached or not."""
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def made(i: int) -> Decided:
        cust, day, action = decisions[i % len(decisions)]
        return Decided(f"c{cust}", t0 + dt.timedelta(days=day, hours=i), "p", "h", action, 1.0)

    def apply(history: History, step: tuple) -> None:
        if step[0] == "decide":
            history.add_decision(made(step[1]))
        else:
            history.add_cancellation(f"c{step[1]}", t0 + dt.timedelta(days=step[2], hours=7))

    kept, dropped = steps[:cut], steps[cut:]
    history, clean = History([], {}, {}), History([], {}, {})
    for step in kept:
        apply(history, step)
        apply(clean, step)
    for day in asked:  # evidence cached before the batch
        history.evidence_at(t0 + dt.timedelta(days=day))
    point = history.savepoint()
    for step in dropped:
        apply(history, step)
        history.evidence_at(t0 + dt.timedelta(days=asked[0]))
    history.rollback(point)
    assert history.decided == clean.decided
    assert {k: v for k, v in history.cancellations.items() if v} == {
        k: v for k, v in clean.cancellations.items() if v
    }
    for day in asked:
        at = t0 + dt.timedelta(days=day)
        assert history.evidence_at(at) == clean.evidence_at(at)

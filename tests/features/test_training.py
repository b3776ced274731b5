"""Point-in-time training sets never let a feature see an event after its cut-off."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from tenure.features.snapshot import snapshot
from tenure.features.state import CustomerState, apply_all
from tenure.features.training import rolling_cutoffs, training_set
from tests.fixtures.features import history
from tests.helpers import T0, ev

CUT = T0 + dt.timedelta(days=60)


def test_no_feature_sees_an_event_after_its_cutoff() -> None:
    events = history(3, n=150, days=120) + history(4, n=150, days=120)
    events = [e for e in events]  # both histories belong to c-1: one dense customer
    base = training_set(events, [CUT], horizon_days=30)
    rng = random.Random(8)
    future = [
        ev(
            "purchase",
            at=CUT + dt.timedelta(hours=rng.randrange(1, 2000)),
            event_id=f"future-{i}",
            amount=500.0,
        )
        for i in range(50)
    ]
    future.append(ev("subscription.cancelled", at=CUT, event_id="at-cutoff"))
    with_future = training_set(events + future, [CUT], horizon_days=30)
    assert [x.features for x in base] == [x.features for x in with_future]
    only_past = apply_all(CustomerState("c-1"), [e for e in events if e.occurred_at < CUT])
    assert base[0].features == snapshot(only_past, CUT)


def test_incremental_cutoffs_equal_replays_from_scratch() -> None:
    events = history(5, n=200, days=120)
    cutoffs = [T0 + dt.timedelta(days=d) for d in (20, 45, 70, 95)]
    examples = training_set(events, cutoffs, horizon_days=14)
    for x in examples:
        state = apply_all(CustomerState("c-1"), [e for e in events if e.occurred_at < x.cutoff])
        assert x.features == snapshot(state, x.cutoff)


def test_labels_follow_the_churn_definition() -> None:
    events = [
        ev("usage", "a", at=1, minutes=1.0),
        ev("usage", "a", at=12, minutes=1.0),
        ev("usage", "b", at=1, minutes=1.0),
        ev("subscription.cancelled", "b", at=11),
        ev("usage", "c", at=1, minutes=1.0),
        ev("purchase", "c", at=13, amount=5.0),
        ev("purchase", "c", at=13.2, amount=5.0),
        ev("purchase", "c", at=15, amount=5.0),
        ev("usage", "late", at=11, minutes=1.0),
    ]
    cut = T0 + dt.timedelta(days=10)
    quiet = {x.customer_id: x for x in training_set(events, [cut], 10, "no-activity")}
    assert set(quiet) == {"a", "b", "c"}  # "late" first appears after the cut-off
    assert (quiet["a"].churned, quiet["b"].churned, quiet["c"].churned) == (False, True, False)
    assert quiet["c"].purchases_after == 2  # distinct purchase days
    cancel = {x.customer_id: x.churned for x in training_set(events, [cut], 10, "cancelled")}
    assert cancel == {"a": False, "b": True, "c": False}
    later = training_set(events, [T0 + dt.timedelta(days=12)], 10, "cancelled")
    assert "b" not in {x.customer_id for x in later}  # already gone at the cut-off


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="churn definition"):
        training_set([], [CUT], 10, "ghosted")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="horizon"):
        training_set([], [CUT], 0)


def test_rolling_cutoffs_leave_a_full_horizon() -> None:
    cuts = rolling_cutoffs(T0, T0 + dt.timedelta(days=90), horizon_days=30, step_days=14)
    assert cuts[0] == T0 + dt.timedelta(days=28)
    assert all(c + dt.timedelta(days=30) <= T0 + dt.timedelta(days=90) for c in cuts)
    assert len(cuts) == 3

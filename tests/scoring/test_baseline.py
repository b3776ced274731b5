"""The baseline scorer: risk moves the right way and its explanation adds up."""

from __future__ import annotations

import math

import msgspec

from tenure.features.snapshot import snapshot
from tenure.features.state import CustomerState, apply_all
from tenure.scoring.baseline import INTERCEPT, score
from tests.helpers import T0, ev


def base():
    events = [ev("subscription.started", at=0, plan="pro", mrr=49.0)]
    events += [ev("usage", at=d, minutes=10.0) for d in range(28)]
    return snapshot(apply_all(CustomerState("c-1"), events), T0.replace(day=28))


def test_signals_raise_risk() -> None:
    f = base()
    calm = score(f).risk
    assert score(msgspec.structs.replace(f, payment_failures_30d=2)).risk > calm
    assert score(msgspec.structs.replace(f, usage_trend=0.2)).risk > calm
    assert score(msgspec.structs.replace(f, subscription_status="cancel_requested")).risk > calm
    assert score(msgspec.structs.replace(f, mean_sentiment_30d=-0.9)).risk > calm


def test_explanation_adds_up_to_the_score() -> None:
    f = msgspec.structs.replace(base(), payment_failures_30d=1, open_tickets=2)
    s = score(f)
    logit = INTERCEPT + sum(c.weight for c in s.contributions)
    assert math.isclose(1 / (1 + math.exp(-logit)), s.risk, abs_tol=1e-5)
    assert [c.feature for c in s.contributions][:1] == ["open_tickets"]


def test_value_counts_subscription() -> None:
    assert score(base()).value == 12 * 49.0

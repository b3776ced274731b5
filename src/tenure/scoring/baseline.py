"""The baseline churn scorer: a transparent heuristic, named as such.

It exists so the loop runs end to end before a model is trained, and so a trained model has
something to beat. Every point of risk it assigns is explained by a named contribution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tenure.features.snapshot import Brief, Features
from tenure.scoring.types import Contribution, Score

SCORER = "baseline-heuristic"
VERSION = "1"

# Weights on the logit scale; chosen by hand to be readable, not fitted.
INTERCEPT = -3.0
W_INACTIVE_PER_DAY = 0.12  # per day since last usage or purchase, capped at 30 days
W_USAGE_DROP = 2.2  # times the fractional drop of the 7-day usage rate against the 21 days before
W_PAYMENT_FAILURE = 0.7  # per failure in 30 days, capped at 3
W_OPEN_TICKET = 0.4  # per open ticket, capped at 3
W_NEGATIVE_SENTIMENT = 1.5  # times the negative part of mean 30-day ticket sentiment
W_CANCEL_REQUESTED = 3.5


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def customer_value(f: Features) -> float:
    """Baseline 12-month value: subscription revenue plus annualised recent purchases."""
    subscription = 12.0 * (f.mrr or 0.0)
    purchases = f.windows.get("purchase_amount_90d", 0.0) * 365.0 / 90.0
    return round(subscription + purchases, 2)


def _weights(f: Brief | Features) -> tuple[tuple[str, object, float], ...]:
    """Each named contribution: (feature, its value, weight on the logit scale)."""
    inactive = min(
        f.days_since_last_activity if f.days_since_last_activity is not None else f.tenure_days,
        30.0,
    )
    drop = max(0.0, 1.0 - f.usage_trend) if f.usage_trend is not None else 0.0
    negative = max(0.0, -(f.mean_sentiment_30d or 0.0))
    return (
        ("days_since_last_activity", inactive, W_INACTIVE_PER_DAY * inactive),
        ("usage_trend", f.usage_trend, W_USAGE_DROP * drop),
        (
            "payment_failures_30d",
            f.payment_failures_30d,
            W_PAYMENT_FAILURE * min(f.payment_failures_30d, 3),
        ),
        ("open_tickets", f.open_tickets, W_OPEN_TICKET * min(f.open_tickets, 3)),
        ("mean_sentiment_30d", f.mean_sentiment_30d, W_NEGATIVE_SENTIMENT * negative),
        (
            "subscription_status",
            f.subscription_status,
            W_CANCEL_REQUESTED if f.subscription_status == "cancel_requested" else 0.0,
        ),
    )


def _risk(weights: tuple[tuple[str, object, float], ...]) -> float:
    # Added one by one, left to right, not with `sum()`: from Python 3.12 `sum()` compensates
    # float rounding, and the risk must be the same float on every version (a replay on
    # another interpreter).
    total = 0.0
    for _, _, w in weights:
        total += w
    return round(_sigmoid(INTERCEPT + total), 6)


def _explain(weights: tuple[tuple[str, object, float], ...]) -> tuple[Contribution, ...]:
    # Largest effect first; ties by name so the explanation is as deterministic as the score.
    ranked = sorted((w for w in weights if w[2]), key=lambda w: (-abs(w[2]), w[0]))
    return tuple(Contribution(n, v, round(w, 6)) for n, v, w in ranked)


def score(f: Features) -> Score:
    """Churn risk in [0, 1] with its explanation, and the customer's value."""
    weights = _weights(f)
    return Score(SCORER, VERSION, _risk(weights), customer_value(f), _explain(weights))


class BaselineScorer:
    """The baseline heuristic as a batch scorer."""

    name = SCORER
    version = VERSION

    def score_many(self, features: Sequence[Features]) -> list[Score]:
        """Risk and value of each snapshot, unexplained: the pipeline scores every customer at
        every instant and explains only the decisions made (`explain_many`)."""
        return [Score(SCORER, VERSION, _risk(_weights(f)), customer_value(f), ()) for f in features]

    def risk_many(self, briefs: Sequence[Brief | Features]) -> list[float]:
        """The risk of each instant from its `Brief` alone: equal to `score_many`'s, which
        reads only these features for it."""
        return [_risk(_weights(b)) for b in briefs]

    def explain_many(self, features: Sequence[Features]) -> list[tuple[Contribution, ...]]:
        """The contributions of each snapshot's score."""
        return [_explain(_weights(f)) for f in features]

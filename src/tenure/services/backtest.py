"""Backtest on a user's own history: features at a cut-off, labels from the horizon after it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np

from tenure.errors import InputError
from tenure.events.envelope import Event
from tenure.features.training import Churn, rolling_cutoffs, training_set
from tenure.scoring import bgnbd, gbm
from tenure.scoring.model import PurchaseModels, purchase_summaries
from tenure.services.models import fit_purchases


def _bgnbd_scores(
    models: PurchaseModels,
    features: list[Any],
    horizon_days: float,
    y: np.ndarray,
    purchases_after: np.ndarray,
) -> dict[str, Any]:
    # BG/NBD predicts purchase silence, not churn as the user defines it; its probability is
    # mapped to the churn label by cross-fitted isotonic calibration, and the raw Brier is kept.
    raw = models.p_no_purchase(features, horizon_days)
    risk = gbm.cross_calibrated(raw, y)
    x, t_x, age, _ = purchase_summaries(features)
    expected = bgnbd.expected_purchases(
        models.bgnbd, horizon_days / bgnbd.DAYS_PER_WEEK, x, t_x, age
    )
    return {
        **gbm.evaluate(risk, y),
        "brier_uncalibrated": round(float(np.mean((raw - y) ** 2)), 4),
        "customers": len(features),
        "params": {k: round(v, 6) for k, v in models.bgnbd.to_dict().items()},
        "expected": round(float(expected.sum()), 2),
        "actual": int(purchases_after.sum()),
    }


def _check_window(events: Sequence[Event], cutoff: dt.datetime, horizon_days: float) -> dt.datetime:
    """The first event's time, once the cut-off and horizon are known to fit in the history."""
    if not events:
        raise InputError("the events file holds no valid events")
    first = min(e.occurred_at for e in events)
    last = max(e.occurred_at for e in events)
    if cutoff <= first:
        raise InputError(
            f"cut-off {cutoff.isoformat()} is not after the first event ({first.isoformat()})"
        )
    if cutoff + dt.timedelta(days=horizon_days) > last:
        raise InputError(
            f"the history ends {last.isoformat()}, before the {horizon_days:g}-day "
            f"horizon after the cut-off does; move the cut-off earlier"
        )
    return first


def _classifier(
    events: Sequence[Event],
    x: Any,
    y: Any,
    first: dt.datetime,
    cutoff: dt.datetime,
    horizon_days: float,
    churn: Churn,
    seed: int,
) -> tuple[Any, str]:
    """The classifier's predictions at the cut-off and how they were made.

    Temporal split when earlier cut-offs have complete labels before this one; else 5-fold
    cross-validation over customers at the cut-off itself.
    """
    train_cuts = rolling_cutoffs(first, cutoff, horizon_days)
    if train_cuts:
        past = training_set(
            [e for e in events if e.occurred_at < cutoff], train_cuts, horizon_days, churn
        )
        py = np.array([e.churned for e in past], dtype=float)
        # One earlier cut-off is too little to learn from (and too exposed to a shifting base
        # rate); cross-validation answers better then.
        if len(train_cuts) >= 3 and min(py.sum(), len(py) - py.sum()) >= 20:
            _, past_groups = np.unique([e.customer_id for e in past], return_inverse=True)
            model = gbm.train(
                gbm.matrix([e.features for e in past]), py, seed=seed, groups=past_groups
            )
            return model.predict(x), f"temporal ({len(train_cuts)} earlier cut-offs)"
    try:
        return gbm.cross_validated(x, y, seed=seed), "cross-validation"
    except ValueError as exc:
        raise InputError(f"cannot evaluate the classifier: {exc}") from None


def backtest(
    events: Sequence[Event],
    cutoff: dt.datetime,
    horizon_days: float,
    churn: Churn = "no-activity",
    seed: int = 7,
) -> dict[str, Any]:
    """Evaluate BG/NBD and the classifier on what happened after `cutoff`."""
    first = _check_window(events, cutoff, horizon_days)
    examples = training_set(events, [cutoff], horizon_days, churn)
    if not examples:
        raise InputError("no customer is active (seen and not cancelled) at the cut-off")
    x = gbm.matrix([e.features for e in examples])
    y = np.array([e.churned for e in examples], dtype=float)
    after = np.array([e.purchases_after for e in examples], dtype=float)
    p, method = _classifier(events, x, y, first, cutoff, horizon_days, churn, seed)

    buyers = [i for i, e in enumerate(examples) if e.features.purchases_total > 0]
    purchases = fit_purchases([examples[i].features for i in buyers])
    models: dict[str, Any] = {"gbm": {**gbm.evaluate(p, y), "method": method}}
    expected_vs_actual: dict[str, Any] = {"expected": None, "actual": int(after.sum())}
    if purchases is not None:
        idx = np.array(buyers)
        scores = _bgnbd_scores(
            purchases, [examples[i].features for i in buyers], horizon_days, y[idx], after[idx]
        )
        expected_vs_actual = {"expected": scores.pop("expected"), "actual": scores.pop("actual")}
        models["bgnbd"] = scores
    churned = int(y.sum())
    warnings = []
    if churned < 30:
        warnings.append(
            f"only {churned} customers churned in the horizon: AUC and calibration are noisy; "
            "use a later cut-off, a longer horizon or more customers"
        )
    return {
        "customers": len(examples),
        "churned": churned,
        "churn": churn,
        "churn_rate": round(float(y.mean()), 4),
        "warnings": warnings,
        "cutoff": cutoff.isoformat(),
        "horizon_days": horizon_days,
        "models": models,
        "expected_vs_actual_purchases": expected_vs_actual,
    }

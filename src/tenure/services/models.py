"""Training, registering, choosing and checking models: what `tenure model ...` does."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from sqlalchemy import Connection

from tenure.errors import ConfigError, InputError
from tenure.events.envelope import Event
from tenure.features.snapshot import Features, snapshot
from tenure.features.state import CustomerState, apply_all
from tenure.features.training import Churn, Example, rolling_cutoffs, training_set
from tenure.scoring import bgnbd, gbm
from tenure.scoring.baseline import BaselineScorer
from tenure.scoring.drift import reference, report
from tenure.scoring.model import (
    ModelBundle,
    ModelScorer,
    PurchaseModels,
    PurchaseScorer,
    purchase_summaries,
)
from tenure.scoring.types import Scorer
from tenure.store import repo

STATUSES = ("candidate", "active", "retired")


@dataclass(frozen=True)
class Trained:
    """A freshly trained bundle and what the registry records about it."""

    bundle: ModelBundle
    params: dict[str, Any]
    window: dict[str, Any]
    fingerprint: str
    metrics: dict[str, Any]


def _xy(examples: Sequence[Example]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = gbm.matrix([e.features for e in examples])
    y = np.array([e.churned for e in examples], dtype=float)
    # Stable group labels (str hash() changes between processes, and folds must not).
    _, groups = np.unique([e.customer_id for e in examples], return_inverse=True)
    return x, y, groups


RECENT_DAYS = 30.0


def recent_window(
    snapshots: Sequence[Features], as_of: dt.datetime, days: float = RECENT_DAYS
) -> list[Features]:
    """Customers seen in the last `days` before `as_of` and not cancelled: the drift population."""
    horizon = as_of - dt.timedelta(days=days)
    return [
        f
        for f in snapshots
        if f.last_seen is not None
        and dt.datetime.fromisoformat(f.last_seen) >= horizon
        and f.subscription_status != "cancelled"
    ]


def final_snapshots(events: Sequence[Event], as_of: dt.datetime) -> list[Features]:
    """Every customer's snapshot as of `as_of`, from events before it."""
    by_customer: dict[str, list[Event]] = {}
    for e in events:
        if e.occurred_at <= as_of:
            by_customer.setdefault(e.customer_id, []).append(e)
    return [
        snapshot(apply_all(CustomerState(cid), evs), as_of)
        for cid, evs in sorted(by_customer.items())
    ]


def fit_purchases(features: Sequence[Features]) -> PurchaseModels | None:
    """BG/NBD and Gamma-Gamma on customers with at least one purchase (None if too few)."""
    buyers = [f for f in features if f.purchases_total > 0]
    # Without enough repeat buyers the likelihood is flat in the dropout parameters and the
    # optimiser "converges" to its starting point: no fit is better than a meaningless one.
    if len(buyers) < 20 or sum(1 for f in buyers if f.frequency > 0) < 10:
        return None
    x, t_x, age, m = purchase_summaries(buyers)
    fit = bgnbd.fit_bgnbd(x, t_x, age)
    if not fit.converged:
        return None
    try:
        gg = bgnbd.fit_gamma_gamma(x, m)
    except ValueError:
        gg = None
    return PurchaseModels(fit.params, gg)


def calibrate_purchases(
    purchases: PurchaseModels, examples: Sequence[Example], horizon_days: float
) -> PurchaseModels:
    """Map BG/NBD's purchase-silence probability to the training churn label (buyers only)."""
    buyers = [e for e in examples if e.features.purchases_total > 0]
    y = np.array([e.churned for e in buyers], dtype=float)
    if min(y.sum(), len(y) - y.sum()) < 5:
        return purchases
    raw = purchases.p_no_purchase([e.features for e in buyers], horizon_days)
    return replace(purchases, calibration=gbm.calibrate(raw, y), horizon_days=horizon_days)


def train(
    events: Sequence[Event],
    horizon_days: float = 30.0,
    churn: Churn = "no-activity",
    step_days: float = 14.0,
    seed: int = 7,
) -> Trained:
    """Fit the classifier on rolling point-in-time examples and the purchase models on all."""
    if not events:
        raise InputError("no events to train on: run some history into the workspace first")
    first = min(e.occurred_at for e in events)
    last = max(e.occurred_at for e in events)
    cutoffs = rolling_cutoffs(first, last, horizon_days, step_days)
    if not cutoffs:
        days = (last - first).total_seconds() / 86_400
        raise InputError(
            f"history spans {days:.0f} days; training needs at least "
            f"{28 + horizon_days:.0f} (28 days of warm-up plus the horizon)"
        )
    examples = training_set(events, cutoffs, horizon_days, churn)
    finals = final_snapshots(events, last)
    x, y, groups = _xy(examples)
    try:
        margins = gbm.out_of_fold_margins(x, y, seed=seed, groups=groups)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    calibration = gbm.calibrate(margins, y)
    # Metrics from a calibration that did not see the rows it is scored on.
    oof = gbm.cross_calibrated(margins, y, seed=seed, groups=groups)
    classifier = gbm.ChurnClassifier(gbm.fit_booster(x, y, seed), calibration)
    # The drift reference is the population the drift check will compare with, as of the end of
    # training: customers active in the last window and not cancelled (same filter, same time).
    latest = gbm.matrix(recent_window(finals, last))
    drift = {name: reference(latest[:, j]) for j, name in enumerate(gbm.FEATURES)}
    drift["score"] = reference(classifier.predict(latest))
    purchases = fit_purchases(finals)
    if purchases is not None:
        purchases = calibrate_purchases(purchases, examples, horizon_days)
    digest = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()
    metrics = {
        "examples": len(y),
        "customers": len({e.customer_id for e in examples}),
        "churn_rate": round(float(y.mean()), 4),
        **gbm.evaluate(oof, y),
    }
    return Trained(
        bundle=ModelBundle(classifier, purchases, drift),
        params={
            "classifier": {**gbm.PARAMS, "rounds": gbm.ROUNDS, "seed": seed},
            "purchases": purchases.to_record() if purchases else None,
        },
        window={
            "first_event": first.isoformat(),
            "last_event": last.isoformat(),
            "first_cutoff": cutoffs[0].isoformat(),
            "last_cutoff": cutoffs[-1].isoformat(),
            "cutoffs": len(cutoffs),
            "horizon_days": horizon_days,
            "churn": churn,
        },
        fingerprint=digest,
        metrics=metrics,
    )


def register(conn: Connection, trained: Trained, now: dt.datetime) -> str:
    """Store a trained bundle as the next candidate version; returns the version."""
    version = f"v{len(repo.models(conn)) + 1}"
    repo.insert_model(
        conn,
        {
            "version": version,
            "algorithm": gbm.ALGORITHM,
            "status": "candidate",
            "created_at": now,
            "params": trained.params,
            "training_window": trained.window,
            "data_fingerprint": trained.fingerprint,
            "metrics": trained.metrics,
            "artifact": trained.bundle.to_artifact(),
        },
    )
    return version


def promote(conn: Connection, version: str) -> str | None:
    """Make `version` the active model; the previous active one is retired (and returned)."""
    row = repo.model(conn, version=version)
    if row is None:
        known = ", ".join(m["version"] for m in repo.models(conn)) or "none"
        raise ConfigError(f"no model version {version!r} (registered: {known})")
    current = repo.model(conn, status="active")
    previous = None
    if current is not None and current.version != version:
        repo.set_model_status(conn, current.version, "retired")
        previous = current.version
    repo.set_model_status(conn, version, "active")
    return previous


def scorer_for(conn: Connection) -> Scorer:
    """The active model; else the newest BG/NBD fit (baseline for non-buyers); else baseline."""
    active = repo.model(conn, status="active")
    if active is not None:
        return ModelScorer(active.version, ModelBundle.from_artifact(active.artifact))
    newest = repo.model(conn)
    if newest is not None:
        bundle = ModelBundle.from_artifact(newest.artifact)
        if bundle.purchases is not None:
            return PurchaseScorer(newest.version, bundle.purchases)
    return BaselineScorer()


def drift(
    conn: Connection, events_as_of: Sequence[Features], version: str | None, threshold: float
) -> tuple[str, list[dict[str, Any]]]:
    """PSI of recent snapshots against a model's training reference."""
    row = (
        repo.model(conn, version=version)
        if version
        else (repo.model(conn, status="active") or repo.model(conn))
    )
    if row is None and version:
        known = ", ".join(m["version"] for m in repo.models(conn)) or "none"
        raise ConfigError(f"no model version {version!r} (registered: {known})")
    if row is None:
        raise ConfigError("no model registered: run `tenure model train` first")
    bundle = ModelBundle.from_artifact(row.artifact)
    x = gbm.matrix(events_as_of)
    recent = {name: x[:, j] for j, name in enumerate(gbm.FEATURES)}
    recent["score"] = bundle.classifier.predict(x)
    return row.version, report(bundle.drift, recent, threshold)


def scorer_named(conn: Connection, name: str, version: str) -> Scorer:
    """The scorer an audit record names, rebuilt from the registry (for replay)."""
    if name == BaselineScorer.name and version == BaselineScorer.version:
        return BaselineScorer()
    row = repo.model(conn, version=version)
    if row is None:
        raise ConfigError(f"model version {version!r} named by the record is not registered")
    bundle = ModelBundle.from_artifact(row.artifact)
    if name == ModelScorer.name:
        return ModelScorer(version, bundle)
    if name == PurchaseScorer.name and bundle.purchases is not None:
        return PurchaseScorer(version, bundle.purchases)
    raise ConfigError(f"unknown scorer {name!r}")

"""The supervised churn classifier: gradient-boosted trees, calibrated, explained per customer.

LightGBM fits the trees; probabilities are calibrated by isotonic regression on out-of-fold
predictions (so calibration never sees a prediction made on its own training rows); explanations
are LightGBM's exact tree contributions (TreeSHAP) in log-odds, split into the features that raised
and the features that lowered this customer's risk.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from tenure.features.snapshot import Features
from tenure.scoring.types import Contribution

ALGORITHM = "lightgbm-isotonic"

# The model's inputs, in order. Missing values (no purchases yet, no tickets) stay NaN: the trees
# learn where missing should go instead of being told a made-up number.
FEATURES: tuple[str, ...] = (
    "tenure_days",
    "days_since_last_seen",
    "days_since_last_activity",
    "frequency",
    "recency_days",
    "age_days",
    "purchases_total",
    "spend_total",
    "mean_order_value",
    "usage_7d",
    "usage_prev_21d",
    "usage_trend",
    "usage_minutes_30d",
    "payment_failures_30d",
    "tickets_30d",
    "open_tickets",
    "mean_sentiment_30d",
    "mrr",
    "cancel_requested",
    "usage_count_90d",
    "purchase_count_30d",
    "purchase_amount_90d",
    "support_count_90d",
    "channel_count_30d",
    "marketing_consents",
)

PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "deterministic": True,
    "force_row_wise": True,
    # One thread: these training sets are small, and OpenMP threads spinning against other
    # work on a two-core machine slowed training by an order of magnitude.
    "num_threads": 1,
    "verbose": -1,
}
ROUNDS = 200


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def vector(f: Features) -> list[float]:
    """The classifier's input row for one snapshot."""
    w = f.windows
    return [
        f.tenure_days,
        f.days_since_last_seen,
        _num(f.days_since_last_activity),
        f.frequency,
        f.recency_days,
        f.age_days,
        f.purchases_total,
        f.spend_total,
        _num(f.mean_order_value),
        f.usage_7d,
        f.usage_prev_21d,
        _num(f.usage_trend),
        f.usage_minutes_30d,
        f.payment_failures_30d,
        f.tickets_30d,
        f.open_tickets,
        _num(f.mean_sentiment_30d),
        _num(f.mrr),
        1.0 if f.subscription_status == "cancel_requested" else 0.0,
        w.get("usage_count_90d", 0.0),
        w.get("purchase_count_30d", 0.0),
        w.get("purchase_amount_90d", 0.0),
        w.get("support_count_90d", 0.0),
        w.get("channel_count_30d", 0.0),
        float(sum(1 for k, v in f.consent.items() if v and k.split(":")[1:2] == ["marketing"])),
    ]


def matrix(features: Sequence[Features]) -> np.ndarray:
    """Rows for many snapshots (float64, NaN for missing)."""
    if not features:
        return np.empty((0, len(FEATURES)))
    return np.asarray([vector(f) for f in features], dtype=np.float64)


@dataclass(frozen=True)
class Calibration:
    """A monotone map from raw log-odds to probability (isotonic knots, linear in between)."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, margin: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for raw margins."""
        return np.interp(margin, self.x, self.y)


class ChurnClassifier:
    """A trained, calibrated classifier: predicts churn probability and explains it."""

    def __init__(self, booster: lgb.Booster, calibration: Calibration) -> None:
        self.booster = booster
        self.calibration = calibration

    def margin(self, x: np.ndarray) -> np.ndarray:
        """Raw log-odds."""
        if len(x) == 0:
            return np.empty(0)
        return np.asarray(self.booster.predict(x, raw_score=True), dtype=np.float64)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Calibrated churn probabilities."""
        return self.calibration(self.margin(x))

    def explain(self, x: np.ndarray, top: int = 3) -> list[tuple[Contribution, ...]]:
        """Per row: the `top` features that raised risk most, then the `top` that lowered it.

        Weights are each feature's exact contribution to the trees' log-odds, before calibration;
        the calibrated risk is a monotone function of their sum, so they rank and sign the reasons
        but do not add up to the probability shown.
        """
        if len(x) == 0:
            return []
        contrib = np.asarray(self.booster.predict(x, pred_contrib=True), dtype=np.float64)
        out = []
        for row, values in zip(contrib, x, strict=True):
            parts = row[:-1]  # the last column is the expected value (bias)
            order = np.argsort(-parts, kind="stable")
            up = [i for i in order[:top] if parts[i] > 0]
            down = [i for i in order[::-1][:top] if parts[i] < 0]
            out.append(
                tuple(
                    Contribution(
                        FEATURES[i],
                        None if math.isnan(values[i]) else float(values[i]),
                        round(float(parts[i]), 6),
                    )
                    for i in [*up, *down]
                )
            )
        return out

    def to_artifact(self) -> dict[str, Any]:
        """A JSON-ready form for the model registry."""
        return {
            "algorithm": ALGORITHM,
            "features": list(FEATURES),
            "booster": self.booster.model_to_string(),
            "calibration": {"x": list(self.calibration.x), "y": list(self.calibration.y)},
        }

    @classmethod
    def from_artifact(cls, artifact: dict[str, Any]) -> ChurnClassifier:
        """Load from `to_artifact()` output; refuses an artifact built on other features."""
        if list(artifact["features"]) != list(FEATURES):
            raise ValueError("this model was trained on a different feature set; retrain it")
        booster = lgb.Booster(model_str=artifact["booster"])
        cal = artifact["calibration"]
        return cls(booster, Calibration(tuple(cal["x"]), tuple(cal["y"])))

    @property
    def fingerprint(self) -> str:
        """sha256 of the trained trees and calibration."""
        text = self.booster.model_to_string() + repr(self.calibration)
        return hashlib.sha256(text.encode()).hexdigest()


def fit_booster(x: np.ndarray, y: np.ndarray, seed: int = 7) -> lgb.Booster:
    """The trees, fitted on all rows."""
    params = {**PARAMS, "seed": seed}
    return lgb.train(
        params, lgb.Dataset(x, label=y, feature_name=list(FEATURES)), num_boost_round=ROUNDS
    )


def out_of_fold_margins(
    x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 7, groups: np.ndarray | None = None
) -> np.ndarray:
    """Raw margins for every row from a model that did not see that row's customer."""
    _check(x, y, folds)
    margins = np.empty(len(y))
    # Grouped by customer when a customer has rows at several cut-offs: otherwise a model would
    # be scored on a customer it has already seen a month earlier.
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(x, y, groups if groups is not None else np.arange(len(y))):
        margins[test] = fit_booster(x[train], y[train], seed).predict(x[test], raw_score=True)
    return margins


def _check(x: np.ndarray, y: np.ndarray, folds: int) -> None:
    if len(y) != len(x):
        raise ValueError("features and labels differ in length")
    positives = int(y.sum())
    if min(positives, len(y) - positives) < folds:
        raise ValueError(
            f"need at least {folds} churned and {folds} retained customers to train "
            f"(have {positives} churned of {len(y)})"
        )


def calibrate(margins: np.ndarray, y: np.ndarray) -> Calibration:
    """Isotonic calibration from out-of-fold margins to observed churn."""
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
    iso.fit(margins, y)
    return Calibration(
        tuple(float(v) for v in iso.X_thresholds_), tuple(float(v) for v in iso.y_thresholds_)
    )


def train(
    x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 7, groups: np.ndarray | None = None
) -> ChurnClassifier:
    """Fit on all rows, calibrated on out-of-fold predictions (folds grouped by customer)."""
    _check(x, y, folds)
    calibration = calibrate(out_of_fold_margins(x, y, folds, seed, groups), y)
    return ChurnClassifier(fit_booster(x, y, seed), calibration)


def cross_calibrated(
    score: np.ndarray,
    y: np.ndarray,
    folds: int = 5,
    seed: int = 7,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Isotonic-calibrated probabilities for every row, each mapped by a fit on the other folds.

    What a calibration is worth has to be measured on rows it was not fitted on; evaluating an
    isotonic map on its own training rows makes every reliability bin look perfect.
    """
    if min(y.sum(), len(y) - y.sum()) < folds:
        return np.clip(score, 0.0, 1.0)
    out = np.empty(len(y))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed + 2)
    for train_idx, test_idx in splitter.split(
        score, y, groups if groups is not None else np.arange(len(y))
    ):
        out[test_idx] = calibrate(score[train_idx], y[train_idx])(score[test_idx])
    return out


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Predicted against observed churn rate per probability decile bin (non-empty bins only)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            table.append(
                {
                    "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                    "customers": int(mask.sum()),
                    "predicted": round(float(p[mask].mean()), 4),
                    "observed": round(float(y[mask].mean()), 4),
                }
            )
    return table


def evaluate(p: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """AUC, Brier score and the reliability table of probabilities against outcomes."""
    auc = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
    return {
        "auc": round(auc, 4),
        "brier": round(float(brier_score_loss(y, p)), 4),
        "reliability": reliability(p, y),
    }


def cross_validated(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 7) -> np.ndarray:
    """Calibrated probabilities for every row, each from models that never saw its customer."""
    _check(x, y, folds)
    out = np.empty(len(y))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + 1)
    for train_idx, test_idx in splitter.split(x, y):
        model = train(x[train_idx], y[train_idx], folds=min(folds, 3), seed=seed)
        out[test_idx] = model.predict(x[test_idx])
    return out

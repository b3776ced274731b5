"""A registered model version: the classifier, the BG/NBD and Gamma-Gamma fits, drift reference.

Also the scorers the pipeline uses: the active model's, a BG/NBD fallback for customers with
purchases when no model is active, and the baseline heuristic for everyone else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from tenure.features.snapshot import Features
from tenure.scoring import bgnbd, gbm
from tenure.scoring.baseline import BaselineScorer, customer_value
from tenure.scoring.drift import Reference
from tenure.scoring.types import Contribution, Score

# Horizons the scorers speak in: churn risk over the next 30 days, value over 52 weeks.
RISK_HORIZON_DAYS = 30.0
CLV_HORIZON_WEEKS = 52.0
CLV_STEP_WEEKS = 4.0  # discounting per four weeks: 13 evaluations instead of 52, same to ~0.5%
CLV_DISCOUNT_PER_STEP = 0.008  # about 11% a year


def purchase_summaries(features: Sequence[Features]) -> tuple[np.ndarray, ...]:
    """(x, t_x, T, m) in weeks from the snapshots' BG/NBD fields."""
    x = np.array([f.frequency for f in features], dtype=float)
    t_x = np.array([f.recency_days for f in features], dtype=float) / bgnbd.DAYS_PER_WEEK
    age = np.array([f.age_days for f in features], dtype=float) / bgnbd.DAYS_PER_WEEK
    # Spend per purchase day: x counts distinct purchase days, so the average the
    # Gamma-Gamma model takes must be per purchase day too, not per purchase event.
    m = np.array([f.spend_total / (f.frequency + 1) for f in features], dtype=float)
    return x, t_x, np.maximum(age, t_x), m


@dataclass(frozen=True)
class PurchaseModels:
    """BG/NBD for purchase frequency and Gamma-Gamma for spend; time in weeks.

    BG/NBD predicts purchase silence, not churn as the user defines it; `calibration` maps its
    probability of no purchase in `horizon_days` to the churn label seen in training.
    """

    bgnbd: bgnbd.BgNbdParams
    gamma_gamma: bgnbd.GammaGammaParams | None
    calibration: gbm.Calibration | None = None
    horizon_days: float = RISK_HORIZON_DAYS

    def p_no_purchase(self, features: Sequence[Features], days: float) -> np.ndarray:
        """P(no purchase in the next `days`): dropped out, or alive and quiet that long."""
        x, t_x, age, _ = purchase_summaries(features)
        p = self.bgnbd
        alive = bgnbd.p_alive(p, x, t_x, age)
        h = days / bgnbd.DAYS_PER_WEEK
        # Given alive, the purchase rate's posterior is Gamma(r + x, alpha + T), so the chance of
        # no purchase in h more weeks is ((alpha + T) / (alpha + T + h)) ** (r + x).
        quiet = ((p.alpha + age) / (p.alpha + age + h)) ** (p.r + x)
        return (1.0 - alive) + alive * quiet

    def churn_risk(self, features: Sequence[Features]) -> np.ndarray:
        """Calibrated churn probability over the training horizon (raw silence if uncalibrated)."""
        raw = self.p_no_purchase(features, self.horizon_days)
        return self.calibration(raw) if self.calibration is not None else raw

    def value(self, features: Sequence[Features]) -> np.ndarray:
        """12-month CLV per customer (0 when no spend model)."""
        if self.gamma_gamma is None:
            return np.zeros(len(features))
        x, t_x, age, m = purchase_summaries(features)
        return bgnbd.clv(
            self.bgnbd,
            self.gamma_gamma,
            x,
            t_x,
            age,
            m,
            horizon_periods=CLV_HORIZON_WEEKS,
            discount_rate=CLV_DISCOUNT_PER_STEP,
            step=CLV_STEP_WEEKS,
        )

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "bgnbd": self.bgnbd.to_dict(),
            "gamma_gamma": self.gamma_gamma.to_dict() if self.gamma_gamma else None,
            "calibration": (
                {"x": list(self.calibration.x), "y": list(self.calibration.y)}
                if self.calibration
                else None
            ),
            "horizon_days": self.horizon_days,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> PurchaseModels:
        """Rebuild from `to_record()` output."""
        gg = rec.get("gamma_gamma")
        cal = rec.get("calibration")
        return cls(
            bgnbd.BgNbdParams.from_dict(rec["bgnbd"]),
            bgnbd.GammaGammaParams.from_dict(gg) if gg else None,
            gbm.Calibration(tuple(cal["x"]), tuple(cal["y"])) if cal else None,
            float(rec.get("horizon_days", RISK_HORIZON_DAYS)),
        )


@dataclass(frozen=True)
class ModelBundle:
    """Everything a registry version holds."""

    classifier: gbm.ChurnClassifier
    purchases: PurchaseModels | None
    drift: dict[str, Reference]

    def to_artifact(self) -> str:
        """Serialized for the registry."""
        return orjson.dumps(
            {
                "classifier": self.classifier.to_artifact(),
                "purchases": self.purchases.to_record() if self.purchases else None,
                "drift": {k: v.to_record() for k, v in self.drift.items()},
            }
        ).decode()

    @classmethod
    def from_artifact(cls, text: str) -> ModelBundle:
        """Load from `to_artifact()` output."""
        data = orjson.loads(text)
        return cls(
            gbm.ChurnClassifier.from_artifact(data["classifier"]),
            PurchaseModels.from_record(data["purchases"]) if data["purchases"] else None,
            {k: Reference.from_record(v) for k, v in data["drift"].items()},
        )


def _values(features: Sequence[Features], purchases: PurchaseModels | None) -> list[float]:
    """Value per customer: subscription revenue plus CLV of purchases where a spend model exists."""
    base = [customer_value(f) for f in features]
    if purchases is None or purchases.gamma_gamma is None:
        return base
    clv = purchases.value(features)
    out = []
    for f, b, c in zip(features, base, clv, strict=True):
        subscription = 12.0 * (f.mrr or 0.0)
        out.append(round(subscription + float(c), 2) if f.purchases_total else b)
    return out


class ModelScorer:
    """Scores with a registered model: calibrated risk, explained by tree contributions."""

    name = "gbm"

    def __init__(self, version: str, bundle: ModelBundle) -> None:
        self.version = version
        self.bundle = bundle

    def score_many(self, features: Sequence[Features]) -> list[Score]:
        """One call to the trees for the whole batch."""
        if not features:
            return []
        risk = self.bundle.classifier.predict(gbm.matrix(features))
        values = _values(features, self.bundle.purchases)
        return [
            Score(self.name, self.version, round(float(r), 6), v, ())
            for r, v in zip(risk, values, strict=True)
        ]

    def explain_many(self, features: Sequence[Features]) -> list[tuple[Contribution, ...]]:
        """Tree contributions: the features that raised and lowered each customer's risk."""
        return self.bundle.classifier.explain(gbm.matrix(features)) if features else []


class PurchaseScorer:
    """No active model: BG/NBD for customers with purchases, the baseline for the others."""

    name = "bgnbd"

    def __init__(self, version: str, purchases: PurchaseModels) -> None:
        self.version = version
        self.purchases = purchases
        self._baseline = BaselineScorer()

    def score_many(self, features: Sequence[Features]) -> list[Score]:
        """BG/NBD risk of no purchase in 30 days where there is purchase history."""
        with_purchases = [i for i, f in enumerate(features) if f.purchases_total > 0]
        out = self._baseline.score_many(features)
        if not with_purchases:
            return out
        chosen = [features[i] for i in with_purchases]
        quiet = self.purchases.churn_risk(chosen)
        values = _values(chosen, self.purchases)
        for i, q, v, f in zip(with_purchases, quiet, values, chosen, strict=True):
            why = (
                Contribution("frequency", f.frequency, 0.0),
                Contribution("recency_days", f.recency_days, 0.0),
                Contribution("age_days", f.age_days, 0.0),
            )
            out[i] = Score(self.name, self.version, round(float(q), 6), v, why)
        return out

    def explain_many(self, features: Sequence[Features]) -> list[tuple[Contribution, ...]]:
        """The BG/NBD inputs behind each score (the baseline's reasons for non-buyers)."""
        return [
            s.contributions or why
            for s, why in zip(
                self.score_many(features), self._baseline.explain_many(features), strict=True
            )
        ]

"""Experiments: what outcomes say about each action's uplift, and how actions are chosen.

Evidence is counted per policy: churned / known outcomes of customers treated with each action,
and of the control group, overall and per customer segment. Uplift means what a policy's prior
means: the share of would-be churners an action keeps, 1 - churn(treated) / churn(control), with a
Beta(1, 1) prior on each rate; within a segment, the rate is shrunk toward the arm's overall rate.

Three ways to choose among the actions that pass the guardrails:

- `best-value`: the highest expected net value with uplift at its posterior mean (or the policy's
  prior while an action has too few outcomes) — deterministic, propensity 1;
- `thompson`: uplift drawn from the posteriors, so actions still being learned keep being tried;
  the propensity (the chance this policy picks the action) is estimated from further draws;
- `ab`: a fixed split by weights, by a stable hash of the customer — propensity is the weight.

Randomness comes only from a generator seeded by the decision's own seed: the same decision always
draws the same numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MIN_OUTCOMES = 20  # below this, an arm's churn rate is too noisy to replace the policy's prior
SHRINK_WEIGHT = 5.0  # how many outcomes the arm's overall rate counts for within a cell
PROPENSITY_DRAWS = 256


RISK_BANDS = ((0.3, "low"), (0.7, "mid"), (1.01, "high"))


def cell(segment: str | None, risk: float) -> str:
    """The cell uplift is learned in: the customer's segment and risk band.

    Risk band matters as much as segment: the riskiest customers are often lost causes and the
    safest would stay anyway, so an offer's effect is rarely the same across bands.
    """
    band = next(name for upper, name in RISK_BANDS if risk < upper)
    return f"{segment or '-'}/{band}"


def segment_key(arm: str, segment: str | None) -> str:
    """The evidence key of an arm ("control" or an action id) within a segment."""
    return f"{arm}|{segment}" if segment else arm


@dataclass(frozen=True)
class Evidence:
    """Outcome counts (churned, known) per arm: "control" or an action id, and
    "<arm>|<segment>" for the same counts within one customer segment."""

    arms: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def control(self) -> tuple[int, int]:
        """The control group's counts over all segments."""
        return self.arms.get("control", (0, 0))

    def learned(self, action_id: str) -> bool:
        """Whether the action and the control each have enough outcomes overall."""
        return (
            self.arms.get(action_id, (0, 0))[1] >= MIN_OUTCOMES and self.control[1] >= MIN_OUTCOMES
        )

    def _beta(self, arm: str, segment: str | None) -> tuple[float, float]:
        """Beta posterior of an arm's churn rate in a segment, shrunk toward the arm overall.

        A segment's few outcomes are pooled with the arm's overall rate (worth SHRINK_WEIGHT
        outcomes), so segments are told apart as soon as they differ, without trusting a
        handful of customers.
        """
        k, n = self.arms.get(arm, (0, 0))
        overall = (1 + k) / (2 + n)
        if segment is None:
            return 1 + k, 1 + n - k
        ks, ns = self.arms.get(segment_key(arm, segment), (0, 0))
        return ks + SHRINK_WEIGHT * overall, ns - ks + SHRINK_WEIGHT * (1 - overall)

    def mean_uplift(self, action_id: str, segment: str | None = None) -> float:
        """Posterior-mean share of would-be churners the action keeps (can be negative)."""
        at, bt = self._beta(action_id, segment)
        ac, bc = self._beta("control", segment)
        return 1.0 - (at / (at + bt)) / (ac / (ac + bc))

    def draw_uplift(
        self,
        action_id: str,
        rng: np.random.Generator,
        size: int | None = None,
        segment: str | None = None,
    ) -> float | np.ndarray:
        """Draws of that share from the Beta posteriors."""
        at, bt = self._beta(action_id, segment)
        ac, bc = self._beta("control", segment)
        return 1.0 - rng.beta(at, bt, size) / rng.beta(ac, bc, size)

    def to_record(self) -> dict[str, object]:
        """A JSON-ready form (kept in the decision's lineage for replay)."""
        return {"arms": {k: list(v) for k, v in sorted(self.arms.items())}}

    @classmethod
    def from_record(cls, rec: Mapping[str, object] | None) -> Evidence:
        """Rebuild from `to_record()` output."""
        arms: Any = (rec or {}).get("arms") or {}
        return cls({k: (int(v[0]), int(v[1])) for k, v in arms.items()})


NO_EVIDENCE = Evidence()


def rng_for(seed: int) -> np.random.Generator:
    """The decision's own generator."""
    return np.random.default_rng(seed)


def ab_arm(customer_id: str, salt: str, weights: Sequence[tuple[str, float]]) -> tuple[str, float]:
    """The arm a customer belongs to in a fixed split, and that arm's share."""
    total = sum(w for _, w in weights)
    digest = hashlib.sha256(f"{salt}\x1f{customer_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * total
    for arm, w in weights:
        if point < w:
            return arm, w / total
        point -= w
    return weights[-1][0], weights[-1][1] / total

"""Experiments: what outcomes say about each action's uplift, and how actions are chosen.

Evidence is counted per policy: churned / known outcomes of customers treated with each action,
and of the control group, overall and per customer segment. Uplift means what a policy's prior
means: the share of would-be churners an action keeps, 1 - churn(treated) / churn(control), with a
Beta(1, 1) prior on each rate. A segment's own evidence is used once it has enough outcomes.

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
PROPENSITY_DRAWS = 256


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

    def _keys(self, action_id: str, segment: str | None) -> tuple[str, str] | None:
        for seg in (segment, None) if segment else (None,):
            t, c = segment_key(action_id, seg), segment_key("control", seg)
            if (
                self.arms.get(t, (0, 0))[1] >= MIN_OUTCOMES
                and self.arms.get(c, (0, 0))[1] >= MIN_OUTCOMES
            ):
                return t, c
        return None

    def learned(self, action_id: str, segment: str | None = None) -> bool:
        """Whether this action (in this segment, else overall) and its control have enough."""
        return self._keys(action_id, segment) is not None

    def _counts(self, action_id: str, segment: str | None) -> tuple[int, int, int, int]:
        t, c = self._keys(action_id, segment) or (action_id, "control")
        kt, nt = self.arms.get(t, (0, 0))
        kc, nc = self.arms.get(c, (0, 0))
        return kt, nt, kc, nc

    def mean_uplift(self, action_id: str, segment: str | None = None) -> float:
        """Posterior-mean share of would-be churners the action keeps (can be negative)."""
        kt, nt, kc, nc = self._counts(action_id, segment)
        return 1.0 - ((1 + kt) / (2 + nt)) / ((1 + kc) / (2 + nc))

    def draw_uplift(
        self,
        action_id: str,
        rng: np.random.Generator,
        size: int | None = None,
        segment: str | None = None,
    ) -> float | np.ndarray:
        """Draws of that share from the Beta posteriors."""
        kt, nt, kc, nc = self._counts(action_id, segment)
        return 1.0 - rng.beta(1 + kt, 1 + nt - kt, size) / rng.beta(1 + kc, 1 + nc - kc, size)

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

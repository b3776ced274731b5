"""Experiments: what outcomes say about each action's uplift, and how actions are chosen.

Evidence is counted per policy: churned / known outcomes of customers treated with each action,
and of the control group. Uplift is the control's churn rate minus the action's, with a Beta(1, 1)
prior on each rate. Three ways to choose among the actions that pass the guardrails:

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

import numpy as np

MIN_OUTCOMES = 20  # below this, an arm's churn rate is too noisy to replace the policy's prior
PROPENSITY_DRAWS = 256


@dataclass(frozen=True)
class Evidence:
    """Outcome counts (churned, known) for the control group and for each action."""

    control: tuple[int, int] = (0, 0)
    actions: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def learned(self, action_id: str) -> bool:
        """Whether both this action and the control have enough outcomes to be used."""
        n_t = self.actions.get(action_id, (0, 0))[1]
        return n_t >= MIN_OUTCOMES and self.control[1] >= MIN_OUTCOMES

    def mean_uplift(self, action_id: str) -> float:
        """Posterior mean of control churn minus treated churn."""
        kc, nc = self.control
        kt, nt = self.actions.get(action_id, (0, 0))
        return (1 + kc) / (2 + nc) - (1 + kt) / (2 + nt)

    def draw_uplift(
        self, action_id: str, rng: np.random.Generator, size: int | None = None
    ) -> float | np.ndarray:
        """Draws of control churn minus treated churn from the Beta posteriors."""
        kc, nc = self.control
        kt, nt = self.actions.get(action_id, (0, 0))
        return rng.beta(1 + kc, 1 + nc - kc, size) - rng.beta(1 + kt, 1 + nt - kt, size)

    def to_record(self) -> dict[str, object]:
        """A JSON-ready form (kept in the decision's lineage for replay)."""
        return {
            "control": list(self.control),
            "actions": {k: list(v) for k, v in sorted(self.actions.items())},
        }

    @classmethod
    def from_record(cls, rec: Mapping[str, object] | None) -> Evidence:
        """Rebuild from `to_record()` output."""
        if not rec:
            return cls()
        control = rec.get("control") or (0, 0)
        actions = rec.get("actions") or {}
        return cls(
            (int(control[0]), int(control[1])),  # type: ignore[index]
            {k: (int(v[0]), int(v[1])) for k, v in actions.items()},
        )  # type: ignore[union-attr]


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

"""Experiments: what outcomes say about each action's uplift, and how actions are chosen.

Evidence is counted per policy: churned / known outcomes of customers treated with each action,
and of the control group, overall and per cell (customer segment and risk band). Uplift means what
a policy's prior means: the share of would-be churners an action keeps, 1 - churn(treated) /
churn(control). It is estimated on the log scale of that churn ratio with partial pooling: a cell's
own outcomes, the rest of its segment and the other segments are weighed by how much each knows
(`Evidence.posterior`), so a cell with few outcomes or few churners borrows from its neighbours
instead of swinging to an extreme it then never gets the evidence to leave.

Three ways to choose among the actions that pass the guardrails:

- `best-value`: the highest expected net value with uplift at its posterior median (or the
  policy's prior while an action has too few outcomes) — deterministic, propensity 1; with the
  experiment's `explore_share`, that share of decisions (drawn from the decision's own seed)
  values the actions at an uplift drawn from the posterior instead, so cells whose estimate is
  low but uncertain keep getting evidence; the decision records the arm (`explore`/`exploit`)
  and the propensity of its action under that mixture;
- `thompson`: uplift drawn from the posteriors, so actions still being learned keep being tried;
  the propensity (the chance this policy picks the action) is estimated from further draws;
- `ab`: a fixed split by weights, by a stable hash of the customer — propensity is the weight.

Randomness comes only from a generator seeded by the decision's own seed: the same decision always
draws the same numbers.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tenure.policy.model import Pooling

MIN_OUTCOMES = 20  # below this, an arm's churn rate is too noisy to replace the policy's prior
PROPENSITY_DRAWS = 256


DEFAULT_POOLING = Pooling()
PRIOR_SD = 1.0  # of an action's overall log churn ratio, around "no effect", once it is learned


def _observe(prior: tuple[float, float], y: float, var: float) -> tuple[float, float]:
    """A normal prior (mean, variance) updated by an observation with known variance."""
    m, v = prior
    w = v + var
    return m + v / w * (y - m), v * var / w


def _combine(observations: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Several observations of one quantity (mean, variance) as one, by precision."""
    weight = sum(1 / v for _, v in observations)
    return sum(y / v for y, v in observations) / weight, 1 / weight


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
    # Posteriors already worked out (the same evidence serves a whole batch of decisions).
    _memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False, hash=False)

    @property
    def control(self) -> tuple[int, int]:
        """The control group's counts over all segments."""
        return self.arms.get("control", (0, 0))

    def learned(self, action_id: str, minimum: int = MIN_OUTCOMES) -> bool:
        """Whether the action and the control each have enough outcomes overall."""
        return self.arms.get(action_id, (0, 0))[1] >= minimum and self.control[1] >= minimum

    def control_outcomes(self, where: str) -> int:
        """Known outcomes of the control group in one cell."""
        return self.arms.get(segment_key("control", where), (0, 0))[1]

    def _cells(self) -> dict[str, str]:
        """Every cell any arm has outcomes in, with the segment it belongs to."""
        found = self._memo.get("cells")
        if found is None:
            names = {key.partition("|")[2] for key in self.arms if "|" in key}
            found = {name: name.partition("/")[0] for name in sorted(names)}
            self._memo["cells"] = found
        return found

    def _counts(self, arm: str, where: str | None) -> tuple[int, int]:
        """An arm's counts in a cell; `None`: those counted overall but under no cell."""
        if where is not None:
            return self.arms.get(segment_key(arm, where), (0, 0))
        k, n = self.arms.get(arm, (0, 0))
        for name in self._cells():
            kk, nn = self.arms.get(segment_key(arm, name), (0, 0))
            k, n = k - kk, n - nn
        return k, n

    def _ratio(self, action_id: str, where: str | None) -> tuple[float, float] | None:
        """Log churn ratio (treated / control) in a cell and its sampling variance."""
        kt, nt = self._counts(action_id, where)
        kc, nc = self._counts("control", where)
        if nt <= 0 or nc <= 0:
            return None
        # Half a churner and half a stayer added to each arm: finite when an arm has none.
        pt, pc = (kt + 0.5) / (nt + 1), (kc + 0.5) / (nc + 1)
        var = (1 - pt) / ((nt + 1) * pt) + (1 - pc) / ((nc + 1) * pc)
        return math.log(pt / pc), var

    def posterior(
        self, action_id: str, where: str | None = None, pooling: Pooling | None = None
    ) -> tuple[float, float]:
        """Mean and variance of log(churn treated / churn control) in a cell.

        A two-level random-effects model with known spreads: a segment's effect varies around
        the action's overall effect by `pooling.segment`, a risk band's around its segment's by
        `pooling.band`. A cell's own outcomes are weighed against what the rest of its segment
        says, and that against the other segments, each by its precision: a cell with a handful
        of outcomes, or so few churners that its ratio means little (a low-risk band), is told by
        its segment; a cell with many speaks for itself. Cells are combined as ratios, never as
        pooled counts, so cells treated and held back in different proportions do not mislead.
        Outcomes counted under no cell speak of the overall effect.
        """
        pooling = pooling or DEFAULT_POOLING
        memo_key = (action_id, where, pooling)
        if (hit := self._memo.get(memo_key)) is not None:
            return hit
        band2, segment2 = pooling.band**2, pooling.segment**2
        segment = where.partition("/")[0] if where else None
        # What each other segment says about its own effect, from its cells.
        others: dict[str | None, list[tuple[float, float]]] = {}
        siblings: list[tuple[float, float]] = []
        for name, seg in self._cells().items():
            if name == where or (obs := self._ratio(action_id, name)) is None:
                continue
            (siblings if seg == segment else others.setdefault(seg, [])).append(
                (obs[0], obs[1] + band2)
            )
        overall = (0.0, PRIOR_SD**2)
        for obs in others.values():
            m, v = _combine(obs)
            overall = _observe(overall, m, v + segment2)
        if (unfiled := self._ratio(action_id, None)) is not None:
            # A mix of every segment: it speaks of the overall effect itself.
            overall = _observe(overall, *unfiled)
        own_segment = (overall[0], overall[1] + segment2)
        if siblings:
            own_segment = _observe(own_segment, *_combine(siblings))
        result = (own_segment[0], own_segment[1] + band2)
        if where is not None and (own := self._ratio(action_id, where)) is not None:
            result = _observe(result, *own)
        self._memo[memo_key] = result
        return result

    def mean_uplift(
        self, action_id: str, segment: str | None = None, pooling: Pooling | None = None
    ) -> float:
        """Share of would-be churners the action keeps, at the posterior median (can be negative).

        The median, not the mean: the log-normal's mean is pulled down by a long tail of effects
        that would multiply churn, which no offer has, and would penalise a cell for being new.
        """
        return 1.0 - math.exp(self.posterior(action_id, segment, pooling)[0])

    def draw_uplift(
        self,
        action_id: str,
        rng: np.random.Generator,
        size: int | None = None,
        segment: str | None = None,
        pooling: Pooling | None = None,
    ) -> float | np.ndarray:
        """Draws of that share from the posterior."""
        m, v = self.posterior(action_id, segment, pooling)
        return 1.0 - np.exp(rng.normal(m, math.sqrt(v), size))

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

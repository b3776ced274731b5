"""What every scorer returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from tenure.features.snapshot import Brief, Features


@dataclass(frozen=True, slots=True)
class Contribution:
    """How much one feature moved the risk, on the logit scale (positive raises risk)."""

    feature: str
    value: Any
    weight: float


@dataclass(frozen=True, slots=True)
class Score:
    """A customer's churn risk, value and the reasons, tagged with the scorer that produced it."""

    scorer: str
    version: str
    risk: float
    value: float
    contributions: tuple[Contribution, ...]

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "scorer": self.scorer,
            "version": self.version,
            "risk": self.risk,
            "value": self.value,
            "contributions": [
                {"feature": c.feature, "value": c.value, "weight": c.weight}
                for c in self.contributions
            ],
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Score:
        """Inverse of `to_record`."""
        return cls(
            rec["scorer"],
            rec["version"],
            rec["risk"],
            rec["value"],
            tuple(
                Contribution(c["feature"], c["value"], c["weight"]) for c in rec["contributions"]
            ),
        )


class Scorer(Protocol):
    """Scores many customers at once (so a model pays its per-call overhead once per batch)."""

    name: str
    version: str

    def score_many(self, features: Sequence[Features]) -> list[Score]:
        """One score per snapshot, in order (explanations may be left empty when costly)."""
        ...

    def explain_many(self, features: Sequence[Features]) -> list[tuple[Contribution, ...]]:
        """The explanation of each snapshot's score."""
        ...


@runtime_checkable
class BriefScorer(Protocol):
    """A scorer whose risk reads only a `Brief`: the pipeline then scores every instant from
    its brief and builds full features only where a decision is considered."""

    def risk_many(self, briefs: Sequence[Brief | Features]) -> list[float]:
        """The risk of each brief, equal to what `score_many` gives on the full features."""
        ...


def explained(scorer: Scorer, features: Sequence[Features], scores: Sequence[Score]) -> list[Score]:
    """The scores with explanations filled in, in one call for all that lack one.

    A model explains lazily: per-customer tree contributions cost far more than the score, and
    only customers a decision is made for need them.
    """
    missing = [i for i, s in enumerate(scores) if not s.contributions]
    out = list(scores)
    if missing:
        reasons = scorer.explain_many([features[i] for i in missing])
        for i, why in zip(missing, reasons, strict=True):
            s = scores[i]
            out[i] = Score(s.scorer, s.version, s.risk, s.value, why)
    return out

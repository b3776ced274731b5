"""What every scorer returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tenure.features.snapshot import Features


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


class Scorer(Protocol):
    """Scores many customers at once (so a model pays its per-call overhead once per batch)."""

    name: str
    version: str

    def score_many(self, features: Sequence[Features]) -> list[Score]:
        """One score per snapshot, in order."""
        ...

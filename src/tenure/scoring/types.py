"""What every scorer returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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

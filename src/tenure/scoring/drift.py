"""Drift: population stability index (PSI) between a reference window and a recent one.

PSI = sum over bins of (recent% - reference%) * ln(recent% / reference%), with bins fixed by the
reference's deciles. Rule of thumb used by credit-risk teams: < 0.1 stable, 0.1-0.25 moderate,
> 0.25 shifted. Missing values get a bin of their own, so a feature that starts arriving empty
shows up as drift too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_THRESHOLD = 0.2
_FLOOR = 1e-4  # an empty bin would make the log infinite; count it as a tiny share instead


@dataclass(frozen=True)
class Reference:
    """One feature's reference distribution: inner bin edges and the share in each bin."""

    edges: tuple[float, ...]
    shares: tuple[float, ...]  # len(edges) + 1 value bins, then the missing-value bin

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"edges": list(self.edges), "shares": list(self.shares)}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Reference:
        """Rebuild from `to_record()` output."""
        return cls(tuple(rec["edges"]), tuple(rec["shares"]))


def _shares(values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    missing = np.isnan(values)
    present = values[~missing]
    counts = np.bincount(
        np.searchsorted(np.asarray(edges), present, side="right"), minlength=len(edges) + 1
    ).astype(float)
    counts = np.append(counts, missing.sum())
    return counts / max(len(values), 1)


def reference(values: np.ndarray, bins: int = 10) -> Reference:
    """Reference bins from the deciles of `values` (NaN allowed)."""
    present = values[~np.isnan(values)]
    if len(present):
        qs = np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])
        edges = tuple(sorted({float(q) for q in qs}))
    else:
        edges = ()
    return Reference(edges, tuple(float(s) for s in _shares(values, edges)))


def psi(ref: Reference, values: np.ndarray) -> float:
    """Population stability index of `values` against the reference."""
    if len(values) == 0:
        return math.nan
    expected = np.maximum(np.asarray(ref.shares), _FLOOR)
    actual = np.maximum(_shares(values, ref.edges), _FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def report(
    refs: dict[str, Reference], recent: dict[str, np.ndarray], threshold: float = DEFAULT_THRESHOLD
) -> list[dict[str, Any]]:
    """PSI per feature, highest first, each flagged when over the threshold."""
    rows = []
    for name, ref in refs.items():
        value = psi(ref, recent[name]) if name in recent else math.nan
        rows.append(
            {
                "feature": name,
                "psi": None if math.isnan(value) else round(value, 4),
                "drifted": bool(value > threshold),
            }
        )
    return sorted(rows, key=lambda r: (-(r["psi"] or 0.0), r["feature"]))

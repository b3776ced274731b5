"""Perceive: churn risk, customer value and the reasons for both."""

from tenure.scoring.baseline import score
from tenure.scoring.types import Contribution, Score

__all__ = ["Contribution", "Score", "score"]

"""Decide: versioned policies under guardrails, and the pure `decide()`."""

from tenure.policy.decide import (
    Candidate,
    Decision,
    DecisionMemory,
    Outcome,
    TriggerContext,
    decide,
)
from tenure.policy.model import Policy, default_policy, load_policy, parse_policy

__all__ = [
    "Candidate",
    "Decision",
    "DecisionMemory",
    "Outcome",
    "Policy",
    "TriggerContext",
    "decide",
    "default_policy",
    "load_policy",
    "parse_policy",
]

"""Replay a decision from its audit record: the lineage alone must reproduce it exactly."""

from __future__ import annotations

from typing import Any

from tenure.errors import AuditError
from tenure.features.snapshot import Features
from tenure.policy.decide import Decision, decide
from tenure.policy.inputs import DecisionInputs
from tenure.policy.model import Policy
from tenure.scoring import baseline
from tenure.scoring.types import Scorer, explained


def replay(body: dict[str, Any], policy: Policy, scorer: Scorer | None = None) -> Decision:
    """Re-run scoring and `decide()` on the inputs recorded in an audit body.

    `scorer` must be the scorer and version the record names (the baseline when omitted).
    """
    lineage = body["lineage"]
    if policy.content_hash != lineage["policy_hash"]:
        raise AuditError("the policy given is not the version the decision was made under")
    scorer = scorer or baseline.BaselineScorer()
    if (lineage["scorer"], lineage["scorer_version"]) != (scorer.name, scorer.version):
        raise AuditError(
            f"scorer {lineage['scorer']} {lineage['scorer_version']} is needed, "
            f"not {scorer.name} {scorer.version}"
        )
    features = Features.from_record(lineage["features"])
    score = explained(scorer, [features], scorer.score_many([features]))[0]
    outcome = decide(DecisionInputs.from_lineage(lineage, score), policy)
    if outcome.decision is None:
        raise AuditError("replay made no decision where the record has one")
    return outcome.decision

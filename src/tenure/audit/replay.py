"""Replay a decision from its audit record: the lineage alone must reproduce it exactly."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tenure.errors import AuditError
from tenure.features.snapshot import Features
from tenure.policy.decide import Decision, DecisionMemory, TriggerContext, decide
from tenure.policy.model import Policy
from tenure.scoring import baseline


def replay(body: dict[str, Any], policy: Policy) -> Decision:
    """Re-run `decide()` on the inputs recorded in an audit body."""
    lineage = body["lineage"]
    if policy.content_hash != lineage["policy_hash"]:
        raise AuditError("the policy given is not the version the decision was made under")
    if (lineage["scorer"], lineage["scorer_version"]) != (baseline.SCORER, baseline.VERSION):
        raise AuditError(f"scorer {lineage['scorer']} {lineage['scorer_version']} is not available")
    features = Features.from_record(lineage["features"])
    trig = lineage["trigger"]
    trigger = TriggerContext(trig["event_id"], trig["event_type"], frozenset(trig["seen_types"]))
    memory = DecisionMemory.from_record(lineage["memory_before"])
    now = dt.datetime.fromisoformat(lineage["now"])
    outcome = decide(features, baseline.score(features), policy, memory, trigger, now)
    if outcome.decision is None:
        raise AuditError("replay made no decision where the record has one")
    return outcome.decision

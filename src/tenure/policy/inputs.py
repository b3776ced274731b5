"""`DecisionInputs`: everything `decide()` reads besides the policy, as one value.

Its record is the audit lineage: the pipeline writes `lineage(policy)` next to each decision and
replay reads it back with `from_lineage`, so what a decision was made from and what replay
re-runs cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from tenure.features.snapshot import Features
from tenure.policy.decision import DecisionMemory, TriggerContext
from tenure.policy.experiments import NO_EVIDENCE, Evidence
from tenure.policy.guardrails import GuardrailSettings
from tenure.policy.model import Policy
from tenure.scoring.types import Score

DEFAULT_GUARDRAILS = GuardrailSettings()


@dataclass(frozen=True, slots=True)
class DecisionInputs:
    """One customer at one instant, as a policy sees them.

    `guardrails` are the workspace's; `budget_spent` is what the policy has already reserved in
    the current budget period; `mode` is live, canary or shadow; `evidence` is what the policy
    has learned of its actions' uplift.
    """

    features: Features
    score: Score
    memory: DecisionMemory
    trigger: TriggerContext
    now: dt.datetime
    guardrails: GuardrailSettings = DEFAULT_GUARDRAILS
    budget_spent: float = 0.0
    mode: str = "live"
    evidence: Evidence = NO_EVIDENCE

    def lineage(self, policy: Policy) -> dict[str, Any]:
        """The audit record of these inputs under `policy` (replay reads it back)."""
        return {
            "trigger_event_id": self.trigger.event_id,
            "trigger": {
                "event_id": self.trigger.event_id,
                "event_type": self.trigger.event_type,
                "seen_types": sorted(self.trigger.seen_types),
                "silences": sorted(self.trigger.silences),
                "period": self.trigger.period,
                **({"payload": dict(self.trigger.payload)} if self.trigger.payload else {}),
                **({"context": dict(self.trigger.context)} if self.trigger.context else {}),
            },
            "now": self.now.isoformat(),
            "features": self.features.to_record(),
            "score": self.score.to_record(),
            "scorer": self.score.scorer,
            "scorer_version": self.score.version,
            "policy_id": policy.id,
            "policy_hash": policy.content_hash,
            "memory_before": self.memory.to_record(),
            "guardrails": self.guardrails.model_dump(mode="json"),
            "budget_spent": self.budget_spent,
            "mode": self.mode,
            "evidence": self.evidence.to_record(),
        }

    @classmethod
    def from_lineage(cls, lineage: dict[str, Any], score: Score) -> DecisionInputs:
        """The inputs an audit record names, with `score` recomputed by the named scorer."""
        trig = lineage["trigger"]
        return cls(
            features=Features.from_record(lineage["features"]),
            score=score,
            memory=DecisionMemory.from_record(lineage["memory_before"]),
            trigger=TriggerContext(
                trig["event_id"],
                trig["event_type"],
                frozenset(trig["seen_types"]),
                frozenset(trig.get("silences", ())),
                bool(trig.get("period", True)),
                trig.get("payload"),
                trig.get("context"),
            ),
            now=dt.datetime.fromisoformat(lineage["now"]),
            guardrails=GuardrailSettings.model_validate(lineage.get("guardrails") or {}),
            budget_spent=lineage.get("budget_spent", 0.0),
            mode=lineage.get("mode", "live"),
            evidence=Evidence.from_record(lineage.get("evidence")),
        )

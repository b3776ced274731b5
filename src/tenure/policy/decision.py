"""What a decision is: the record of one evaluation, its candidates, and what a policy remembers.

Pure data and the two derivations every decision makes (its id and its seed), shared by
`decide()`, the pipeline, replay and the simulator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tenure.policy.guardrails import Contact
from tenure.scoring.types import Contribution

Status = Literal["action", "none", "suppressed", "human"]


@dataclass(frozen=True, slots=True)
class DecisionMemory:
    """What a policy remembers about one customer between decisions."""

    at_risk: bool = False
    last_intervention_at: str | None = None  # ISO-8601 UTC of the last action taken
    contacts: tuple[Contact, ...] = ()  # recent deliveries, for the caps
    open_journeys: int = 0  # journeys still running for the customer (counted per batch)

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "at_risk": self.at_risk,
            "last_intervention_at": self.last_intervention_at,
            "contacts": [[c.at, c.channel] for c in self.contacts],
            "open_journeys": self.open_journeys,
        }

    @classmethod
    def of_customer(cls, customer_memory: dict[str, Any] | None, policy_id: str) -> DecisionMemory:
        """This policy's view of a customer's memory.

        The last intervention is the customer's, whichever policy made it: a cooldown is a
        guardrail, and a second policy must not get round it. Only the at-risk band is per policy.
        """
        rec = customer_memory or {}
        return cls(
            cls.band_of(rec, policy_id),
            rec.get("last_intervention_at"),
            _contacts(rec.get("contacts")),
        )

    def into_customer(
        self, customer_memory: dict[str, Any] | None, policy_id: str
    ) -> dict[str, Any]:
        """The customer's memory with this policy's evaluation folded in."""
        bands = {**(customer_memory or {}).get("at_risk", {}), policy_id: self.at_risk}
        return _customer_record(bands, self.last_intervention_at, self.contacts)

    @staticmethod
    def band_of(customer_memory: dict[str, Any] | None, policy_id: str) -> bool:
        """Whether the customer is in this policy's at-risk band (`of_customer(...).at_risk`)."""
        return bool((customer_memory or {}).get("at_risk", {}).get(policy_id, False))

    @staticmethod
    def band_into(
        customer_memory: dict[str, Any] | None, policy_id: str, at_risk: bool
    ) -> dict[str, Any]:
        """`of_customer(m, p)` with the band set to `at_risk`, folded back `into_customer`."""
        rec = customer_memory or {}
        bands = rec.get("at_risk")
        if bands is not None and bands.get(policy_id) is at_risk and list(rec) == _RECORD_KEYS:
            # Already in the stored shape with this band: most instants settle the band where
            # it stood, and rebuilding the record for each of them cost a tenth of deciding.
            return rec
        bands = {**rec.get("at_risk", {}), policy_id: at_risk}
        contacts = _contacts(rec.get("contacts"))
        return _customer_record(bands, rec.get("last_intervention_at"), contacts)

    @staticmethod
    def merged(survivor: dict[str, Any] | None, other: dict[str, Any] | None) -> dict[str, Any]:
        """Two ids' memories as one person's: in a policy's band if either was, the newer last
        intervention, and both ids' contacts, so cooldowns and caps count across the ids."""
        a, b = survivor or {}, other or {}
        bands = dict(a.get("at_risk", {}))
        for key, band in b.get("at_risk", {}).items():
            bands[key] = bool(bands.get(key, False) or band)
        last = [x for x in (a.get("last_intervention_at"), b.get("last_intervention_at")) if x]
        contacts = sorted({(c.at, c.channel) for m in (a, b) for c in _contacts(m.get("contacts"))})
        both = [Contact(at, channel) for at, channel in contacts]
        return _customer_record(bands, max(last) if last else None, both)

    @classmethod
    def from_record(cls, rec: dict[str, Any] | None) -> DecisionMemory:
        """Rebuild from `to_record()` output; None means a customer never evaluated."""
        if not rec:
            return cls()
        return cls(
            bool(rec["at_risk"]),
            rec.get("last_intervention_at"),
            _contacts(rec.get("contacts")),
            int(rec.get("open_journeys", 0)),
        )


_RECORD_KEYS = ["at_risk", "last_intervention_at", "contacts"]  # `_customer_record`'s keys


def _customer_record(
    bands: dict[str, bool], last_intervention_at: str | None, contacts: Iterable[Contact]
) -> dict[str, Any]:
    """A customer's memory as stored: each policy's band, the last intervention, contacts."""
    return {
        "at_risk": bands,
        "last_intervention_at": last_intervention_at,
        "contacts": [[c.at, c.channel] for c in contacts],
    }


def _contacts(rows: Any) -> tuple[Contact, ...]:
    return tuple(Contact(int(at), str(channel)) for at, channel in rows or ())


@dataclass(frozen=True, slots=True)
class TriggerContext:
    """Why the customer is evaluated at this instant.

    `event_id` and `event_type` name the newest event since the previous instant (the
    correlation id of what follows), or the instant itself when only a silence timer fired;
    `seen_types` are the event types since the previous instant; `silences` the keys of the
    silence timers firing now (see features/instants.py); `period` whether a period with events
    closes now.
    """

    event_id: str
    event_type: str
    seen_types: frozenset[str]
    silences: frozenset[str] = frozenset()
    period: bool = True
    # That event's payload as sent (extra fields included) and its producer's context, which
    # conditions read as `event.payload.x` and `event.context.x`.
    payload: Mapping[str, Any] | None = None
    context: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """One action considered, its expected net value and the guardrail verdict on it."""

    action_id: str
    channel: str
    expected_net_value: float
    blocked_by: str | None
    detail: str | None
    uplift: float = 0.0  # the uplift the value was computed with
    uplift_source: str = "prior"  # "prior" (the policy's) or "posterior" (its outcomes)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the engine decided for one customer at one moment, and why."""

    decision_id: str
    customer_id: str
    decided_at: str
    status: Status
    action_id: str | None
    channel: str | None
    guardrail: str | None
    reason: str
    risk: float
    value: float
    candidates: tuple[Candidate, ...]
    policy_id: str
    policy_hash: str
    trigger_event_id: str
    trigger_type: str
    scorer: str
    scorer_version: str
    seed: int
    explanation: tuple[Contribution, ...] = ()
    deliver_at: str | None = None  # when it may go out: after decided_at in quiet hours
    cost: float = 0.0  # reserved against the policy's budget
    # How the action was chosen and the probability this policy had of choosing it: what an
    # off-line evaluation of another policy on these logs needs. Best-value is deterministic.
    selection: str = "best-value"
    arm: str | None = None  # the experiment arm (A/B or Thompson), when there is one
    human_queue: str | None = None  # for status "human": the queue the task goes to
    propensity: float | None = None
    mode: str = "live"
    segment: str | None = None  # the customer's segment at the instant (what evidence cells use)

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready form."""
        rec = {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]
        rec["explanation"] = [
            {"feature": c.feature, "value": c.value, "weight": c.weight} for c in self.explanation
        ]
        rec["candidates"] = [
            {
                "action_id": c.action_id,
                "channel": c.channel,
                "expected_net_value": c.expected_net_value,
                "blocked_by": c.blocked_by,
                "detail": c.detail,
                "uplift": c.uplift,
                "uplift_source": c.uplift_source,
            }
            for c in self.candidates
        ]
        return rec


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of an evaluation: a decision if the trigger fired, and the updated memory."""

    decision: Decision | None
    memory: DecisionMemory


def decision_id(policy_id: str, customer_id: str, instant: str) -> str:
    """A stable id: the same policy, customer and instant always name the same decision, so a
    re-run, a second worker or a restart cannot decide one instant twice."""
    digest = hashlib.sha256(f"{policy_id}\x1f{customer_id}\x1f{instant}".encode())
    return "d-" + digest.hexdigest()[:24]


def decision_seed(customer_id: str, decision_key: str) -> int:
    """The seed for any randomised choice in this decision, derived, never drawn."""
    digest = hashlib.sha256(f"{customer_id}\x1f{decision_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")

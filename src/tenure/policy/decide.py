"""`decide()`: the pure heart of the decide layer.

Its only inputs are the customer's feature snapshot and score, the policy version, what the policy
remembers of the customer, the triggering event and the clock time. No wall clock, no global random
state: replaying an audit record reproduces its decision exactly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from tenure.features.snapshot import Features
from tenure.policy.conditions import holds
from tenure.policy.experiments import (
    NO_EVIDENCE,
    PROPENSITY_DRAWS,
    Evidence,
    ab_arm,
    cell,
    rng_for,
)
from tenure.policy.guardrails import (
    Contact,
    GuardrailSettings,
    cap_block,
    delivery_time,
    in_control_group,
    recent,
    zone,
)
from tenure.policy.model import CONSENT_PURPOSE, Action, Policy, Pooling
from tenure.scoring.types import Contribution, Score

DEFAULT_GUARDRAILS = GuardrailSettings()

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
            bool(rec.get("at_risk", {}).get(policy_id, False)),
            rec.get("last_intervention_at"),
            _contacts(rec.get("contacts")),
        )

    def into_customer(
        self, customer_memory: dict[str, Any] | None, policy_id: str
    ) -> dict[str, Any]:
        """The customer's memory with this policy's evaluation folded in."""
        rec = customer_memory or {}
        return {
            "at_risk": {**rec.get("at_risk", {}), policy_id: self.at_risk},
            "last_intervention_at": self.last_intervention_at,
            "contacts": [[c.at, c.channel] for c in self.contacts],
        }

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


def _contacts(rows: Any) -> tuple[Contact, ...]:
    return tuple(Contact(int(at), str(channel)) for at, channel in rows or ())


@dataclass(frozen=True, slots=True)
class TriggerContext:
    """The event at which the customer is evaluated and the event types seen since the last time."""

    event_id: str
    event_type: str
    seen_types: frozenset[str]


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


def _thompson(
    allowed: list[Candidate],
    policy: Policy,
    score: Score,
    evidence: Evidence,
    seed: int,
    segment: str | None,
) -> tuple[Candidate, float]:
    """Choose by drawn uplift; estimate how often this choice would be made (the propensity)."""
    pooling = policy.experiment.pooling
    rng = rng_for(seed)
    costs = {a.id: a.cost for a in policy.actions}

    def draws(size: int | None) -> dict[str, Any]:
        return {
            c.action_id: (
                evidence.draw_uplift(c.action_id, rng, size, segment, pooling)
                if c.uplift_source == "posterior"
                else c.uplift
            )
            for c in allowed
        }

    first = draws(None)
    value = {
        c.action_id: score.risk * first[c.action_id] * score.value - costs[c.action_id]
        for c in allowed
    }
    # The first best in `allowed` order, the same tie-break np.argmax uses for the propensity.
    best = allowed[int(np.argmax([value[c.action_id] for c in allowed]))]
    many = draws(PROPENSITY_DRAWS)
    values = np.array(
        [
            np.broadcast_to(
                score.risk * many[c.action_id] * score.value - costs[c.action_id], PROPENSITY_DRAWS
            )
            for c in allowed
        ]
    )
    wins = np.mean(np.argmax(values, axis=0) == allowed.index(best))
    return best, round(float(wins), 4)


def _best_allowed(candidates: list[Candidate]) -> Candidate | None:
    """The action best-value takes among candidates: the best positive value no guardrail blocks."""
    ok = [c for c in candidates if c.blocked_by is None and c.expected_net_value > 0]
    return min(ok, key=lambda c: (-c.expected_net_value, c.action_id)) if ok else None


@dataclass(frozen=True)
class _Exploration:
    """Best-value's exploring decisions: actions valued at an uplift drawn from the posterior."""

    evidence: Evidence
    where: str
    pooling: Pooling
    score: Score
    policy: Policy
    candidates: list[Candidate]

    def _uplifts(self, rng: np.random.Generator, size: int | None) -> dict[str, Any]:
        # An action still on its prior has no posterior to draw from: it keeps the prior.
        return {
            c.action_id: (
                self.evidence.draw_uplift(c.action_id, rng, size, self.where, self.pooling)
                if c.uplift_source == "posterior"
                else c.uplift
            )
            for c in self.candidates
        }

    def drawn(self, seed: int) -> list[Candidate]:
        """The candidates valued at one draw (the draw the decision acts on)."""
        rng = rng_for(seed)
        rng.random()  # the draw that chose to explore
        uplifts = self._uplifts(rng, None)
        costs = {a.id: a for a in self.policy.actions}
        out = []
        for c in self.candidates:
            u = round(float(uplifts[c.action_id]), 6)
            source = "draw" if c.uplift_source == "posterior" else c.uplift_source
            value = _net_value(costs[c.action_id], self.score, u)
            out.append(replace(c, expected_net_value=value, uplift=u, uplift_source=source))
        return out

    def chance(self, action_id: str, seed: int, acted: bool) -> float:
        """How often an exploring decision takes `action_id`, estimated from further draws.

        `acted`: the decision's own draw took it, and counts as one more draw (so an action
        taken is never reported as impossible).
        """
        rng = rng_for(seed ^ 0x5EED)
        many = self._uplifts(rng, PROPENSITY_DRAWS)
        ok = [c for c in self.candidates if c.blocked_by is None]
        costs = {a.id: a.cost for a in self.policy.actions}
        # Taking no action is worth 0: a draw where every action loses money takes none.
        values = np.zeros((len(ok) + 1, PROPENSITY_DRAWS))
        risk, value = self.score.risk, self.score.value
        for row, c in enumerate(sorted(ok, key=lambda c: c.action_id), start=1):
            values[row] = risk * many[c.action_id] * value - costs[c.action_id]
        names = [None, *sorted(c.action_id for c in ok)]
        if action_id not in names:
            return 0.0
        hits = int(np.count_nonzero(np.argmax(values, axis=0) == names.index(action_id)))
        return (hits + acted) / (PROPENSITY_DRAWS + acted)


def decision_id(policy_id: str, customer_id: str, trigger_event_id: str) -> str:
    """A stable id: the same policy, customer and trigger always name the same decision."""
    digest = hashlib.sha256(f"{policy_id}\x1f{customer_id}\x1f{trigger_event_id}".encode())
    return "d-" + digest.hexdigest()[:24]


def decision_seed(customer_id: str, decision_key: str) -> int:
    """The seed for any randomised choice in this decision, derived, never drawn."""
    digest = hashlib.sha256(f"{customer_id}\x1f{decision_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _net_value(action: Action, score: Score, uplift: float) -> float:
    return round(score.risk * uplift * score.value - action.cost, 6)


def decide(
    features: Features,
    score: Score,
    policy: Policy,
    memory: DecisionMemory,
    trigger: TriggerContext,
    now: dt.datetime,
    guardrails: GuardrailSettings = DEFAULT_GUARDRAILS,
    budget_spent: float = 0.0,
    mode: str = "live",
    evidence: Evidence = NO_EVIDENCE,
) -> Outcome:
    """Evaluate the policy for one customer at `now`; pure and deterministic.

    `guardrails` are the workspace's; `budget_spent` is what the policy has already reserved in
    the current budget period. Guardrails are checked in a fixed order of precedence: suppression
    list, cooldown, concurrent journeys, then per action consent, quiet hours, caps and budget;
    the control group holds back a customer only once an action (or a hand-off) has been chosen.
    """
    at_risk = score.risk >= policy.trigger.risk_at_least
    if features.subscription_status == "cancelled" or not at_risk:
        return Outcome(None, replace(memory, at_risk=False))
    signalled = bool(trigger.seen_types & set(policy.trigger.on_events))
    if memory.at_risk and not signalled:
        return Outcome(None, memory)
    context: dict[str, Any] | None = None
    if (
        policy.eligibility
        or policy.trigger.when
        or policy.escalations
        or any(a.when for a in policy.actions)
    ):
        context = {
            "risk": score.risk,
            "value": score.value,
            "features": features.to_record(),
            "event": {"type": trigger.event_type, "id": trigger.event_id},
        }
    # Not in the policy's audience (or the trigger's condition fails): not considered, and the
    # band re-arms so the customer is considered when they do qualify.
    for condition in (*policy.eligibility, *([policy.trigger.when] if policy.trigger.when else [])):
        if not holds(condition, context or {})[0]:
            return Outcome(None, replace(memory, at_risk=False))

    decided_at = _iso(now)
    if memory.at_risk:
        why = (
            f"signal {sorted(trigger.seen_types & set(policy.trigger.on_events))[0]} while at risk"
        )
    else:
        why = f"risk {score.risk:.2f} reached {policy.trigger.risk_at_least:.2f}"

    cooldown: str | None = None
    if memory.last_intervention_at is not None:
        last = dt.datetime.fromisoformat(memory.last_intervention_at)
        since_days = (now - last).total_seconds() / 86_400
        if since_days < policy.guardrails.cooldown_days:
            cooldown = (
                f"last intervention {since_days:.1f} days ago; cooldown is "
                f"{policy.guardrails.cooldown_days:g} days"
            )

    escalation = next((e for e in policy.escalations if holds(e.when, context or {})[0]), None)
    customer_block: tuple[str, str] | None = None
    if features.customer_id in guardrails.suppressed_customers:
        customer_block = ("suppression_list", "customer is on the suppression list")
    elif cooldown is not None:
        customer_block = ("cooldown", cooldown)
    elif memory.open_journeys >= guardrails.max_concurrent_journeys:
        customer_block = (
            "concurrent_journeys",
            f"{memory.open_journeys} journey(s) still running; at most "
            f"{guardrails.max_concurrent_journeys} at once",
        )

    did = decision_id(
        f"{policy.id}\x1f{policy.content_hash}", features.customer_id, trigger.event_id
    )
    seed = decision_seed(features.customer_id, did)
    selection = policy.selection.mode

    where = cell(features.segment, score.risk)
    experiment = policy.experiment.settings(features.segment)
    pooling = policy.experiment.pooling

    def uplift_of(action: Action) -> tuple[float, str]:
        if evidence.learned(action.id, experiment.min_outcomes):
            return round(evidence.mean_uplift(action.id, where, pooling), 6), "posterior"
        return action.uplift, "prior"

    tz = zone(features.timezone, guardrails)
    deliver_at, deferral = delivery_time(now, tz, guardrails.quiet_hours)
    budget = policy.budget
    candidates: list[Candidate] = []
    purpose = CONSENT_PURPOSE
    for action in policy.actions:
        blocked_by, detail = customer_block or (None, None)
        if blocked_by is not None:
            pass
        elif action.when and not (met := holds(action.when, context or {}))[0]:
            blocked_by = "condition"
            detail = f"condition {action.when!r} " + (f"failed: {met[1]}" if met[1] else "is false")
        elif not features.consented(action.channel, purpose):
            blocked_by, detail = "consent", f"no {purpose} consent on {action.channel}"
        elif deliver_at is None:
            blocked_by, detail = "quiet_hours", deferral
        elif cap := cap_block(memory.contacts, action.channel, deliver_at, tz, guardrails.caps):
            blocked_by, detail = "frequency_cap", cap
        elif budget is not None and budget_spent + action.cost > budget.amount + 1e-9:
            blocked_by, detail = (
                "budget",
                (
                    f"budget {budget.amount:g} per {budget.period}: {budget_spent:g} reserved, "
                    f"{action.cost:g} more would exceed it"
                ),
            )
        uplift, source = uplift_of(action)
        candidates.append(
            Candidate(
                action.id,
                action.channel,
                _net_value(action, score, uplift),
                blocked_by,
                detail,
                uplift,
                source,
            )
        )
    greedy = _best_allowed(candidates)
    exploring: float | None = None  # the propensity of an exploring decision's action
    arm: str | None = None
    if selection == "best-value" and experiment.explore_share > 0:
        explore = _Exploration(evidence, where, pooling, score, policy, candidates)
        arm = "exploit"
        if rng_for(seed).random() < experiment.explore_share:
            arm, candidates = "explore", explore.drawn(seed)
        drawn_best = _best_allowed(candidates)
        if drawn_best is not None:
            share = experiment.explore_share
            exploit = 1.0 if greedy is not None and greedy.action_id == drawn_best.action_id else 0
            chance = explore.chance(drawn_best.action_id, seed, arm == "explore")
            exploring = (1 - share) * exploit + share * chance
    # Best value first; ties broken by action id so the choice never depends on file order.
    ranked = sorted(candidates, key=lambda c: (-c.expected_net_value, c.action_id))
    # An action whose own condition fails is not a candidate at all (unlike a guardrail block,
    # it does not make the decision "suppressed"); it stays in the record with the reason.
    positive = [c for c in ranked if c.expected_net_value > 0 and c.blocked_by != "condition"]
    allowed = [c for c in positive if c.blocked_by is None]

    status: Status
    chosen: Candidate | None = None
    guardrail: str | None = None
    propensity: float | None = None
    if selection == "ab":
        # A fixed split: the customer's arm is decided by a hash, whatever its value; the
        # guardrails still apply to that arm.
        weights = [
            (a.id, policy.selection.weights.get(a.id, 1.0))
            for a in policy.actions
            if policy.selection.weights.get(a.id, 1.0) > 0
        ]
        # Salted apart from the canary hash, so a canary A/B test still splits its customers.
        arm, share = ab_arm(features.customer_id, f"ab:{policy.content_hash}", weights)
        pick = next(c for c in ranked if c.action_id == arm)
        if pick.blocked_by is None:
            chosen, propensity = pick, share
            status, reason = "action", f"{why}; A/B arm {arm} ({share:.0%} of customers)"
        elif pick.blocked_by == "condition":
            status, reason = "none", f"{why}; A/B arm {arm}: {pick.detail}"
        else:
            status, guardrail = "suppressed", pick.blocked_by
            reason = f"{why}; A/B arm {arm}: {pick.detail}"
    elif allowed and selection == "thompson":
        chosen, propensity = _thompson(allowed, policy, score, evidence, seed, where)
        arm = chosen.action_id
        status, reason = (
            "action",
            (f"{why}; Thompson sampling chose {arm} ({propensity:.0%} of draws choose it)"),
        )
    elif allowed and arm == "explore":
        chosen, propensity = allowed[0], round(exploring or 0.0, 4)
        status, reason = (
            "action",
            f"{why}; exploring: best net value {chosen.expected_net_value:.2f} at an uplift drawn "
            f"from the posterior (propensity {propensity:.1%})",
        )
    elif allowed:
        chosen = allowed[0]
        propensity = 1.0 if exploring is None else round(exploring, 4)
        status, reason = "action", f"{why}; best expected net value {chosen.expected_net_value:.2f}"
    elif positive:
        status, guardrail = "suppressed", positive[0].blocked_by
        reason = f"{why}; {positive[0].detail}"
    else:
        excluded = all(c.blocked_by == "condition" for c in ranked)
        status, reason = (
            "none",
            (
                f"{why}; no action's condition holds"
                if excluded
                else f"{why}; no action has a positive expected net value"
            ),
        )
    human_queue: str | None = None
    held_back = False
    if escalation is not None and customer_block is None:
        # A person decides instead: no automatic contact, so consent and contact caps do not
        # apply here, but the suppression list and the cooldown do, and it counts as an
        # intervention for the next cooldown.
        status, guardrail, chosen, propensity = "human", None, None, None
        human_queue = escalation.queue
        reason = f"{why}; escalated to {escalation.queue}: {escalation.when}"
    # The policy's experiment holds back more than the workspace's control group while the
    # customer's cell is still being learned (by the same hash: the global group is inside it).
    control_share = guardrails.control_share
    if (
        experiment.control_share > control_share
        and evidence.control_outcomes(where) < experiment.control_until
    ):
        control_share = experiment.control_share
    if (chosen is not None or status == "human") and in_control_group(
        features.customer_id, guardrails, control_share
    ):
        # Held back only once the policy would have acted (an action or a hand-off to a person):
        # the control group is then made of customers the policy would have treated, which is
        # what lift must compare against. It starts the cooldown like a treatment would, so a
        # held-back customer is not decided again (and counted twice) days later.
        would = chosen.action_id if chosen is not None else f"a hand-off to {human_queue}"
        status, guardrail, held_back = "suppressed", "control_group", True
        group = (
            f"the global control group ({control_share:.0%})"
            if control_share == guardrails.control_share
            else f"the experiment's control group ({control_share:.0%} while {where} is learned)"
        )
        reason = f"{why}; would have taken {would}, but the customer is in {group}"
        chosen, propensity, human_queue = None, None, None
    if chosen is not None and deferral:
        reason += f"; {deferral}"

    decision = Decision(
        decision_id=did,
        customer_id=features.customer_id,
        decided_at=decided_at,
        status=status,
        action_id=chosen.action_id if chosen else None,
        channel=chosen.channel if chosen else None,
        guardrail=guardrail,
        reason=reason,
        risk=score.risk,
        value=score.value,
        candidates=tuple(ranked),
        policy_id=policy.id,
        policy_hash=policy.content_hash,
        trigger_event_id=trigger.event_id,
        trigger_type=trigger.event_type,
        scorer=score.scorer,
        scorer_version=score.version,
        seed=seed,
        explanation=score.contributions,
        deliver_at=_iso(deliver_at) if chosen and deliver_at else None,
        selection=selection,
        arm=arm,
        propensity=propensity,
        human_queue=human_queue,
        mode=mode,
        cost=next(a.cost for a in policy.actions if a.id == chosen.action_id) if chosen else 0.0,
    )
    contacts = recent(memory.contacts, now)
    if chosen is not None and deliver_at is not None:
        contacts = (*contacts, Contact(int(deliver_at.timestamp()), chosen.channel))
    new_memory = DecisionMemory(
        at_risk=True,
        last_intervention_at=(
            decided_at
            if status in ("action", "human") or held_back
            else memory.last_intervention_at
        ),
        contacts=contacts,
    )
    return Outcome(decision, new_memory)

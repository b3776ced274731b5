"""`decide(inputs, policy)`: the pure heart of the decide layer.

Its only inputs are one `DecisionInputs` (the customer's features and score at the instant,
what the policy remembers of them, the trigger, the time, the workspace guardrails, the budget
already reserved, the mode and the learned evidence) and the policy version. No wall clock, no
global random state: replaying an audit record reproduces its decision exactly. The guardrail
pass lives in `guardrail_pass`, the choice among candidates in `selection`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tenure.events.envelope import payload_record
from tenure.expressions import holds
from tenure.features.instants import Instant
from tenure.policy.decision import (
    Candidate,
    Decision,
    DecisionMemory,
    Outcome,
    Status,
    TriggerContext,
    decision_id,
    decision_seed,
)
from tenure.policy.experiments import cell
from tenure.policy.guardrail_pass import Block, Screened, customer_block, screen
from tenure.policy.guardrails import Contact, in_control_group, recent
from tenure.policy.inputs import DEFAULT_GUARDRAILS, DecisionInputs
from tenure.policy.model import Policy
from tenure.policy.selection import Choice, choose
from tenure.times import from_epoch, iso

__all__ = [
    "DEFAULT_GUARDRAILS",
    "Candidate",
    "Decision",
    "DecisionInputs",
    "DecisionMemory",
    "Outcome",
    "Status",
    "TriggerContext",
    "decide",
]


def decide(inputs: DecisionInputs, policy: Policy) -> Outcome:
    """Evaluate the policy for one customer at `inputs.now`; pure and deterministic.

    Guardrails are checked in a fixed order of precedence: suppression list, cooldown,
    concurrent journeys, then per action consent, quiet hours, caps and budget; the control
    group holds back a customer only once an action (or a hand-off) has been chosen.
    """
    considered = _considered(inputs, policy)
    if isinstance(considered, Outcome):
        return considered
    context, why = considered
    features = inputs.features
    did = decision_id(
        f"{policy.id}\x1f{policy.content_hash}", features.customer_id, iso(inputs.now)
    )
    seed = decision_seed(features.customer_id, did)
    block = customer_block(inputs, policy)
    screened = screen(inputs, policy, context, block)
    where = cell(features.segment, inputs.score.risk)
    explore_share = policy.experiment.settings(features.segment).explore_share
    choice = choose(
        screened.candidates,
        policy,
        inputs.score,
        inputs.evidence,
        seed,
        where,
        explore_share,
        features.customer_id,
        why,
    )
    choice = _escalated(choice, policy, context, block, why)
    choice = _held_back(choice, inputs, policy, where, why)
    if choice.chosen is not None and screened.deferral:
        choice = dataclasses.replace(choice, reason=f"{choice.reason}; {screened.deferral}")
    decision = _decision(inputs, policy, choice, screened, did, seed)
    return Outcome(decision, _memory_after(inputs, choice, screened, decision.decided_at))


def trigger_of(instant: Instant) -> TriggerContext:
    """What a policy is told about why the customer is evaluated at `instant` (the pipeline and
    the simulator both ask this)."""
    if instant.newest is not None:
        event_id, event_type = instant.newest
    else:
        event_id, event_type = f"instant:{iso(from_epoch(instant.at))}", "silence"
    e = instant.newest_event
    return TriggerContext(
        event_id,
        event_type,
        instant.seen_types,
        instant.silences,
        instant.period,
        payload_record(e) if e is not None else None,
        e.context if e is not None else None,
    )


def _signals(policy: Policy, seen_types: frozenset[str], silences: frozenset[str]) -> list[str]:
    """What at this instant re-triggers the policy for a customer already at risk."""
    return sorted(seen_types & set(policy.trigger.on_events)) + sorted(
        silences & policy.trigger.silence_keys
    )


def settled_band(
    policy: Policy,
    risk: float,
    subscription_status: str | None,
    was_at_risk: bool,
    seen_types: frozenset[str],
    silences: frozenset[str],
) -> bool | None:
    """The at-risk band after an instant when it is settled before the policy is evaluated (no
    decision can come of it), else None. A customer cancelled or under the risk threshold
    leaves the band; one already in it with no signal stays. The pipeline asks this first at
    every instant and builds the decision's inputs only for the few it leaves open."""
    if subscription_status == "cancelled" or risk < policy.trigger.risk_at_least:
        return False
    if was_at_risk and not _signals(policy, seen_types, silences):
        return True
    return None


def _considered(inputs: DecisionInputs, policy: Policy) -> Outcome | tuple[Any, str]:
    """Whether the policy evaluates this customer now: the expression context and why, or the
    outcome of not evaluating (the at-risk band re-armed or kept)."""
    score, memory, trigger = inputs.score, inputs.memory, inputs.trigger
    band = settled_band(
        policy,
        score.risk,
        inputs.features.subscription_status,
        memory.at_risk,
        trigger.seen_types,
        trigger.silences,
    )
    if band is not None:
        return Outcome(None, dataclasses.replace(memory, at_risk=band))
    signals = _signals(policy, trigger.seen_types, trigger.silences)
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
            "features": inputs.features.to_record(),
            "event": {
                "type": trigger.event_type,
                "id": trigger.event_id,
                "payload": dict(trigger.payload or {}),
                "context": dict(trigger.context or {}),
            },
            "silences": sorted(trigger.silences),
        }
    # Not in the policy's audience (or the trigger's condition fails): not considered, and the
    # band re-arms so the customer is considered when they do qualify.
    for condition in (*policy.eligibility, *([policy.trigger.when] if policy.trigger.when else [])):
        if not holds(condition, context or {})[0]:
            return Outcome(None, dataclasses.replace(memory, at_risk=False))
    if memory.at_risk:
        return context, f"signal {signals[0]} while at risk"
    return context, f"risk {score.risk:.2f} reached {policy.trigger.risk_at_least:.2f}"


def _escalated(
    choice: Choice, policy: Policy, context: Any, block: Block | None, why: str
) -> Choice:
    """A person decides instead when an escalation holds: no automatic contact, so consent and
    contact caps do not apply here, but the suppression list and the cooldown do, and it counts
    as an intervention for the next cooldown."""
    escalation = next((e for e in policy.escalations if holds(e.when, context or {})[0]), None)
    if escalation is None or block is not None:
        return choice
    return dataclasses.replace(
        choice,
        status="human",
        guardrail=None,
        chosen=None,
        propensity=None,
        human_queue=escalation.queue,
        reason=f"{why}; escalated to {escalation.queue}: {escalation.when}",
    )


def _held_back(
    choice: Choice, inputs: DecisionInputs, policy: Policy, where: str, why: str
) -> Choice:
    """Held back only once the policy would have acted (an action or a hand-off to a person):
    the control group is then made of customers the policy would have treated, which is what
    lift must compare against. It starts the cooldown like a treatment would, so a held-back
    customer is not decided again (and counted twice) days later."""
    guardrails = inputs.guardrails
    experiment = policy.experiment.settings(inputs.features.segment)
    # The policy's experiment holds back more than the workspace's control group while the
    # customer's cell is still being learned (by the same hash: the global group is inside it).
    share = guardrails.control_share
    if (
        experiment.control_share > share
        and inputs.evidence.control_outcomes(where) < experiment.control_until
    ):
        share = experiment.control_share
    acting = choice.chosen is not None or choice.status == "human"
    if not acting or not in_control_group(inputs.features.customer_id, guardrails, share):
        return choice
    chosen = choice.chosen
    would = chosen.action_id if chosen is not None else f"a hand-off to {choice.human_queue}"
    group = (
        f"the global control group ({share:.0%})"
        if share == guardrails.control_share
        else f"the experiment's control group ({share:.0%} while {where} is learned)"
    )
    return dataclasses.replace(
        choice,
        status="suppressed",
        guardrail="control_group",
        held_back=True,
        reason=f"{why}; would have taken {would}, but the customer is in {group}",
        chosen=None,
        propensity=None,
        human_queue=None,
    )


def _decision(
    inputs: DecisionInputs,
    policy: Policy,
    choice: Choice,
    screened: Screened,
    did: str,
    seed: int,
) -> Decision:
    """The decision record."""
    chosen, score, deliver_at = choice.chosen, inputs.score, screened.deliver_at
    return Decision(
        decision_id=did,
        customer_id=inputs.features.customer_id,
        decided_at=iso(inputs.now),
        status=choice.status,
        action_id=chosen.action_id if chosen else None,
        channel=chosen.channel if chosen else None,
        guardrail=choice.guardrail,
        reason=choice.reason,
        risk=score.risk,
        value=score.value,
        candidates=choice.ranked,
        policy_id=policy.id,
        policy_hash=policy.content_hash,
        trigger_event_id=inputs.trigger.event_id,
        trigger_type=inputs.trigger.event_type,
        scorer=score.scorer,
        scorer_version=score.version,
        seed=seed,
        explanation=score.contributions,
        deliver_at=iso(deliver_at) if chosen and deliver_at else None,
        selection=policy.selection.mode,
        arm=choice.arm,
        propensity=choice.propensity,
        human_queue=choice.human_queue,
        mode=inputs.mode,
        segment=inputs.features.segment,
        cost=next(a.cost for a in policy.actions if a.id == chosen.action_id) if chosen else 0.0,
    )


def _memory_after(
    inputs: DecisionInputs, choice: Choice, screened: Screened, decided_at: str
) -> DecisionMemory:
    """What the policy remembers afterwards: at risk, the intervention, the new contact."""
    memory = inputs.memory
    contacts = recent(memory.contacts, inputs.now)
    if choice.chosen is not None and screened.deliver_at is not None:
        at = int(screened.deliver_at.timestamp())
        contacts = (*contacts, Contact(at, choice.chosen.channel))
    intervened = choice.status in ("action", "human") or choice.held_back
    return DecisionMemory(
        at_risk=True,
        last_intervention_at=decided_at if intervened else memory.last_intervention_at,
        contacts=contacts,
    )

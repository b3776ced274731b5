"""The guardrail pass: which guardrail, if any, blocks each action for this customer now.

Checked in a fixed order of precedence: for the customer, the suppression list, the cooldown
and the number of running journeys; then per action its own condition, consent, quiet hours,
the contact caps and the budget. A policy cannot switch any of them off (invariant 8).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from tenure.expressions import holds
from tenure.policy.decision import Candidate
from tenure.policy.experiments import cell
from tenure.policy.guardrails import cap_block, delivery_time, zone
from tenure.policy.inputs import DecisionInputs
from tenure.policy.model import CONSENT_PURPOSE, Action, Policy
from tenure.policy.selection import net_value

Block = tuple[str, str]  # (guardrail, why)


def customer_block(inputs: DecisionInputs, policy: Policy) -> Block | None:
    """What blocks every action for this customer: suppression list, cooldown, open journeys."""
    memory, guardrails = inputs.memory, inputs.guardrails
    if inputs.features.customer_id in guardrails.suppressed_customers:
        return "suppression_list", "customer is on the suppression list"
    if memory.last_intervention_at is not None:
        last = dt.datetime.fromisoformat(memory.last_intervention_at)
        since_days = (inputs.now - last).total_seconds() / 86_400
        if since_days < policy.guardrails.cooldown_days:
            return "cooldown", (
                f"last intervention {since_days:.1f} days ago; cooldown is "
                f"{policy.guardrails.cooldown_days:g} days"
            )
    if memory.open_journeys >= guardrails.max_concurrent_journeys:
        return "concurrent_journeys", (
            f"{memory.open_journeys} journey(s) still running; at most "
            f"{guardrails.max_concurrent_journeys} at once"
        )
    return None


@dataclass(frozen=True)
class Screened:
    """Every action valued and screened, and when a send could go out (None: quiet hours)."""

    candidates: list[Candidate]
    deliver_at: dt.datetime | None
    deferral: str | None


def screen(
    inputs: DecisionInputs,
    policy: Policy,
    context: dict[str, Any] | None,
    block: Block | None,
) -> Screened:
    """Value each action at its prior or learned uplift and name what blocks it, if anything."""
    features, guardrails = inputs.features, inputs.guardrails
    tz = zone(features.timezone, guardrails)
    deliver_at, deferral = delivery_time(inputs.now, tz, guardrails.quiet_hours)
    where = cell(features.segment, inputs.score.risk)
    min_outcomes = policy.experiment.settings(features.segment).min_outcomes
    candidates = []
    when = _When(tz, deliver_at, deferral)
    for action in policy.actions:
        blocked_by, detail = block or _action_block(inputs, policy, action, context, when)
        if inputs.evidence.learned(action.id, min_outcomes):
            mean = inputs.evidence.mean_uplift(action.id, where, policy.experiment.pooling)
            uplift, source = round(mean, 6), "posterior"
        else:
            uplift, source = action.uplift, "prior"
        value = net_value(action, inputs.score, uplift)
        candidates.append(
            Candidate(action.id, action.channel, value, blocked_by, detail, uplift, source)
        )
    return Screened(candidates, deliver_at, deferral)


@dataclass(frozen=True)
class _When:
    """The customer's time zone and when a send could go out (None: quiet hours, and why)."""

    tz: ZoneInfo
    deliver_at: dt.datetime | None
    deferral: str | None


def _action_block(
    inputs: DecisionInputs,
    policy: Policy,
    action: Action,
    context: dict[str, Any] | None,
    when: _When,
) -> tuple[str | None, str | None]:
    """The first guardrail that blocks this action, or (None, None)."""
    features, guardrails = inputs.features, inputs.guardrails
    if action.when and not (met := holds(action.when, context or {}))[0]:
        return "condition", f"condition {action.when!r} " + (
            f"failed: {met[1]}" if met[1] else "is false"
        )
    if not features.consented(action.channel, CONSENT_PURPOSE):
        return "consent", f"no {CONSENT_PURPOSE} consent on {action.channel}"
    if when.deliver_at is None:
        return "quiet_hours", when.deferral
    caps = guardrails.caps
    cap = cap_block(inputs.memory.contacts, action.channel, when.deliver_at, when.tz, caps)
    if cap:
        return "frequency_cap", cap
    budget, spent = policy.budget, inputs.budget_spent
    if budget is not None and spent + action.cost > budget.amount + 1e-9:
        return "budget", (
            f"budget {budget.amount:g} per {budget.period}: {spent:g} reserved, "
            f"{action.cost:g} more would exceed it"
        )
    return None, None

"""Closed-loop simulation: a policy decides for synthetic customers whose truth is known.

Each customer has a churn probability over the outcome horizon, a value, and a true response to
the offer (the share of their churn it prevents) that depends on their segment: some respond,
some do not, some would stay anyway. Customers reach their decision moment week by week; each
targeting mode spends the same budget per cohort; outcomes are drawn once per customer (common
random numbers), so modes differ only in whom they treat. `best-value` runs the real `decide()`
with the policy, the workspace-style guardrails and a control group, and learns the offer's uplift
per segment and risk band from the outcomes of earlier cohorts, as the engine does from its own
history. What learning costs is counted: customers held back as control (the workspace's group and
the larger one the policy's experiment holds back while a cell is learned) and customers treated
because an exploring decision valued the offer at a posterior draw (ranked by that drawn value).

An action with a journey runs it through the journey machine in simulated time: a customer the
offer saves redeems it the day after (`channel.redeemed`), the others let it lapse, and a
journey that compensates gives its reserved cost back to the budget of later cohorts.

When a customer is decided: where the engine would decide them (features/instants.py). A
customer arriving on day d has events (who they are, an active subscription, marketing consent on
the policy's channels, then usage at 12:00 UTC that day); the features layer's own `advance`
turns them into the engine's instant, the close of that UTC day (00:00 UTC of day d+1, a period
with events), whose features fold the events before it; the policy is told what the engine tells
it there (`trigger_of`, the pipeline's), and `decide` gets the instant as its time, so the
decision id and seed are the ones the engine derives. A weekly cohort is thus the customers
whose signal arrived in those seven days, each decided at the close of their day, and a cohort
learns from the outcomes whose horizon had passed by its first decision. Silence timers are not
simulated: each customer is decided once, at the close of their arrival day, before any timer of
the policy could fire.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import numpy as np

from tenure.events.envelope import Event, event_types
from tenure.features.instants import Cadence, Instant, advance, event_order, seconds
from tenure.features.state import CustomerState
from tenure.journeys.machine import JourneyInput, Seen, Undo, simulate
from tenure.journeys.spec import SINGLE_SEND, JourneyError, JourneySpec
from tenure.policy.decide import Decision, DecisionMemory, decide, trigger_of
from tenure.policy.experiments import Evidence, cell, segment_key
from tenure.policy.guardrails import GuardrailSettings
from tenure.policy.inputs import DecisionInputs
from tenure.policy.model import Policy, parse_policy
from tenure.scoring.types import Score
from tenure.times import from_epoch

Targeting = Literal["best-value", "riskiest", "random", "oracle"]
TARGETINGS: tuple[Targeting, ...] = ("best-value", "riskiest", "random", "oracle")
# When day 0's signals arrive; the engine decides them at the close of that UTC day.
START = dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC)

# The offer keeps this share of would-be churners, by segment (the ground truth to discover).
RESPONSE = {"smb": 0.55, "consumer": 0.2, "enterprise": 0.05}
SEGMENT_SHARES = {"smb": 0.4, "consumer": 0.45, "enterprise": 0.15}

SIM_POLICY = {
    "id": "simulated-offer",
    "label": "one offer, value-based",
    "trigger": {"risk_at_least": 0.0},
    "actions": [{"id": "offer", "channel": "email", "cost": 5.0, "uplift": 0.2}],
    # Hold back 30% of the customers it would treat in a segment and risk band until that cell's
    # control group has 100 known outcomes (then only the workspace's 5%), and value a tenth of
    # its decisions at a posterior draw, so a cell whose first outcomes looked bad is still tried.
    "experiment": {"control_share": 0.3, "control_until": 100, "explore_share": 0.1},
}


@dataclass(frozen=True)
class SimSpec:
    """The population and the run."""

    customers: int = 20_000
    days: int = 196
    seed: int = 7
    horizon_days: int = 28
    cohort_days: int = 7
    budget: float | None = None  # total; default: enough to treat a tenth of customers
    control_share: float = 0.05  # the workspace's global control group (the policy may add)


@dataclass(frozen=True)
class Population:
    """Ground truth, one entry per customer."""

    segment: np.ndarray
    value: np.ndarray
    churn: np.ndarray  # probability of churning within the horizon if left alone
    response: np.ndarray  # share of that churn the offer prevents
    risk: np.ndarray  # what a churn model would estimate (noisy)
    arrival: np.ndarray  # day of the signal; decided at the close of that UTC day
    draw: np.ndarray  # the uniform draw that settles the outcome


def population(spec: SimSpec) -> Population:
    """A population drawn from the spec's seed."""
    rng = np.random.default_rng(spec.seed)
    n = spec.customers
    names = list(SEGMENT_SHARES)
    segment = rng.choice(names, size=n, p=[SEGMENT_SHARES[s] for s in names])
    base_value = {"smb": 600.0, "consumer": 250.0, "enterprise": 3000.0}
    value = np.array([base_value[s] for s in segment]) * rng.lognormal(0.0, 0.5, n)
    at_risk = rng.random(n) < 0.35
    churn = np.where(at_risk, rng.beta(3, 3, n), rng.beta(1, 25, n))
    response = np.array([RESPONSE[s] for s in segment]) * rng.uniform(0.7, 1.3, n)
    response = np.where(churn > 0.85, 0.05, response)  # lost causes barely move
    risk = np.clip(churn + rng.normal(0.0, 0.07, n), 0.0, 1.0)
    last = max(1, spec.days - spec.horizon_days)
    arrival = rng.integers(0, last, n)
    return Population(segment, value, churn, np.clip(response, 0, 1), risk, arrival, rng.random(n))


# Each event type's own struct (its `type` is a class attribute).
_EVENTS: dict[str, type[Event]] = {str(t.type): t for t in event_types()}


def customer_id(i: int) -> str:
    """The id of simulated customer `i`."""
    return f"s-{i:06d}"


def signals(i: int, segment: str, day: int, channels: frozenset[str]) -> list[Event]:
    """Customer `i`'s events up to their decision: who they are, an active subscription and
    marketing consent on `channels` (an hour before), and usage at 12:00 UTC on arrival `day`."""
    cid = customer_id(i)
    at = START + dt.timedelta(days=day)
    facts = (at - dt.timedelta(hours=1)).isoformat()

    def event(kind: str, key: str, when: str, **payload: str) -> Event:
        # Validated as `make_event` validates, but converted to the type's own struct: resolving
        # the union of every type is most of `make_event`'s cost (some 35 µs an event against 7).
        fields = {"event_id": f"{cid}-{key}", "customer_id": cid, "occurred_at": when}
        return msgspec.convert(
            {"type": kind, **fields, "payload": payload}, _EVENTS[kind], strict=False
        )

    return [
        event("profile.updated", "profile", facts, segment=segment, timezone="UTC"),
        event("subscription.started", "subscription", facts),
        *(
            event("consent.granted", f"consent-{c}", facts, channel=c, purpose="marketing")
            for c in sorted(channels)
        ),
        event("usage", f"usage-{day}", at.isoformat()),
    ]


def instant_of(events: Sequence[Event], cadence: Cadence) -> Instant:
    """The first instant the engine's rule makes of a new customer's events: the close of the
    period of their first events (no silence timer can fire before it)."""
    pending = sorted(events, key=event_order)
    first = cadence.close(seconds(pending[0]))
    advanced = advance(CustomerState(pending[0].customer_id), 0, pending, cadence, 0, first)
    return advanced.instants[0]


def decision_of(
    i: int, pop: Population, policy: Policy, guardrails: GuardrailSettings, evidence: Evidence
) -> Decision | None:
    """The policy's decision for customer `i` at the close of their arrival day, with the
    features, trigger and time the engine would give it there; the score is the simulated one."""
    channels = frozenset(a.channel for a in policy.actions)
    events = signals(i, str(pop.segment[i]), int(pop.arrival[i]), channels)
    instant = instant_of(events, Cadence(silences=policy.trigger.silences()))
    risk, value = round(float(pop.risk[i]), 6), round(float(pop.value[i]), 2)
    inputs = DecisionInputs(
        instant.features,
        Score("simulated", "1", risk, value, ()),
        DecisionMemory(),
        trigger_of(instant),
        from_epoch(instant.at),
        guardrails,
        evidence=evidence,
    )
    return decide(inputs, policy).decision


def decided_at(day: int) -> dt.datetime:
    """When a customer whose signal arrived on `day` is decided: the close of that UTC day."""
    return from_epoch(Cadence().close(int((START + dt.timedelta(days=day)).timestamp())))


# priority, customer, held back as control, action, explored (valued at a posterior draw)
Candidate = tuple[float, int, bool, str, bool]


def _choose(
    mode: Targeting,
    idx: np.ndarray,
    pop: Population,
    policy: Policy,
    evidence: Evidence,
    guardrails: GuardrailSettings,
    rng: np.random.Generator,
) -> list[Candidate]:
    """Candidates of one cohort. The baselines use the policy's first action."""
    first = policy.actions[0].id
    if mode == "oracle":
        return [
            (pop.churn[i] * pop.response[i] * pop.value[i], i, False, first, False) for i in idx
        ]
    if mode == "riskiest":
        return [(pop.risk[i], i, False, first, False) for i in idx]
    if mode == "random":
        draws = rng.random(len(idx))
        return [(float(r), i, False, first, False) for r, i in zip(draws, idx, strict=True)]
    ranked = []
    for i in idx:
        d = decision_of(int(i), pop, policy, guardrails, evidence)
        if d is None or d.status == "none":
            continue
        held_back = d.guardrail == "control_group"
        if d.status == "action" or held_back:
            pick = next((c for c in d.candidates if c.action_id == d.action_id), None) or max(
                d.candidates, key=lambda c: c.expected_net_value
            )
            explored = d.arm == "explore"
            ranked.append((pick.expected_net_value, int(i), held_back, pick.action_id, explored))
    return ranked


def _journey_specs(
    policy: Policy, journeys: Mapping[str, JourneySpec] | None
) -> dict[str, JourneySpec]:
    specs = {}
    for a in policy.actions:
        if a.journey is None:
            specs[a.id] = SINGLE_SEND
        elif journeys is None or a.journey not in journeys:
            raise JourneyError(f"action {a.id!r}: journey {a.journey!r} was not given")
        else:
            specs[a.id] = journeys[a.journey]
    return specs


def _run_journey(
    spec: JourneySpec, i: int, action: str, channel: str, cost: float, day: int, saved: bool
) -> tuple[str, float, int]:
    """(outcome, cost given back, messages sent) of one customer's journey in simulated time,
    started when the decision was made (the close of arrival `day`)."""
    start = decided_at(day).timestamp()
    inp = JourneyInput(f"sim-{i}", f"sim-{i}", action, channel, cost=cost)
    redeem = [Seen(start + 86_400, "channel.redeemed", f"sim-{i}-redeem")] if saved else []
    state, commands = simulate(spec, inp, start, redeem)
    released = sum(c.release for c in commands if isinstance(c, Undo))
    sends = sum(c.kind == "deliver" for c in commands)
    return state.outcome or "ended", released, sends


def run(
    spec: SimSpec,
    mode: Targeting,
    policy: Policy | None = None,
    journeys: Mapping[str, JourneySpec] | None = None,
) -> dict[str, Any]:
    """Simulate one targeting mode; saved customers and value, overall and once learned.

    The offer's true effect is the same whichever of the policy's actions carries it; what the
    policy has to find out is whom it works for. `journeys` are the specs the actions name.
    """
    policy = policy or parse_policy(SIM_POLICY)
    specs = _journey_specs(policy, journeys)
    channel_of = {a.id: a.channel for a in policy.actions}
    outcomes: Counter[str] = Counter()
    messages, carried = 0, 0.0  # carried: budget compensated journeys gave back, for later
    pop = population(spec)
    costs = {a.id: a.cost for a in policy.actions}
    budget = _budget(spec, costs[policy.actions[0].id])
    guardrails = _guardrails(spec)
    rng = np.random.default_rng(spec.seed + 1)
    treated = np.zeros(spec.customers, dtype=bool)
    control = np.zeros(spec.customers, dtype=bool)
    exploring = np.zeros(spec.customers, dtype=bool)
    action_of: dict[int, str] = {}
    spent = np.zeros(spec.customers)
    cohorts = range(0, max(1, spec.days - spec.horizon_days), spec.cohort_days)
    for start in cohorts:
        idx = np.flatnonzero((pop.arrival >= start) & (pop.arrival < start + spec.cohort_days))
        # Outcomes of cohorts whose horizon has passed are known: that is all the policy learns.
        known = np.flatnonzero((treated | control) & (pop.arrival + spec.horizon_days <= start))
        evidence = _evidence(pop, known, treated, action_of)
        ranked = _choose(mode, idx, pop, policy, evidence, guardrails, rng)
        allowance = budget * len(idx) / spec.customers + carried
        carried = 0.0
        # Walk down the ranking; a control customer is held back where it stands (so treated and
        # control are alike), costing nothing.
        for _, i, held_back, action, explored in sorted(ranked, key=lambda x: (-x[0], x[1])):
            if allowance < min(costs.values()):
                break
            if held_back:
                control[i] = True
                continue
            if costs[action] > allowance:
                continue
            treated[i] = True
            exploring[i] = explored
            action_of[int(i)] = action
            spent[i] = costs[action]
            allowance -= costs[action]
            saved = bool(pop.churn[i] * (1 - pop.response[i]) <= pop.draw[i] < pop.churn[i])
            journey = (specs[action], int(i), action, channel_of[action], costs[action])
            outcome, released, sent = _run_journey(*journey, int(pop.arrival[i]), saved)
            outcomes[outcome] += 1
            messages += sent
            spent[i] -= released
            carried += released
    # "Once learned": the second half of the run, when every cell has had outcomes to learn from.
    learned_from = max(spec.horizon_days + spec.cohort_days, spec.days // 2)
    return {
        "targeting": mode,
        **_tally(pop, treated, spent, np.ones(spec.customers, dtype=bool)),
        "learned": _tally(pop, treated, spent, pop.arrival >= learned_from),
        "journeys": dict(sorted(outcomes.items())),
        "messages": messages,
        # Customers held back as control, and treated because an exploring decision drew a
        # good enough uplift: what learning cost.
        "control": int(control.sum()),
        "explored": int(exploring.sum()),
    }


def _budget(spec: SimSpec, first_cost: float) -> float:
    """The run's budget: as given, else enough for a tenth of customers at the first action."""
    return spec.budget if spec.budget is not None else 0.1 * spec.customers * first_cost


def _guardrails(spec: SimSpec) -> GuardrailSettings:
    """No caps or quiet hours in the simulation; its own control group, salted by the seed."""
    return GuardrailSettings(
        caps=(), quiet_hours=None, control_share=spec.control_share, control_salt=f"sim-{spec.seed}"
    )


def _evidence(pop: Population, known: Any, treated: Any, action_of: Mapping[int, str]) -> Evidence:
    """Churned and total per arm, overall and per cell, over customers with known outcomes."""
    arms: dict[str, list[int]] = {}
    for j in known:
        churned = int(pop.draw[j] < _churn_probability(pop, j, treated[j]))
        arm = action_of[int(j)] if treated[j] else "control"
        where = cell(str(pop.segment[j]), float(round(pop.risk[j], 6)))
        for key in (segment_key(arm, None), segment_key(arm, where)):
            k_n = arms.setdefault(key, [0, 0])
            k_n[0] += churned
            k_n[1] += 1
    return Evidence({k: (v[0], v[1]) for k, v in arms.items()})


def _churn_probability(pop: Population, i: int, treated: bool) -> float:
    return float(pop.churn[i] * (1.0 - pop.response[i] if treated else 1.0))


def _tally(
    pop: Population, treated: np.ndarray, spent_each: np.ndarray, mask: np.ndarray
) -> dict[str, Any]:
    t = treated & mask
    saved = t & (pop.draw >= pop.churn * (1 - pop.response)) & (pop.draw < pop.churn)
    n_saved = int(saved.sum())
    spent = float(spent_each[t].sum())
    return {
        "treated": int(t.sum()),
        "saved": n_saved,
        "saved_value": round(float(pop.value[saved].sum()), 2),
        # In expectation (no luck of the draw): what the comparison with the oracle is made on.
        "expected_saved": round(float((pop.churn * pop.response)[t].sum()), 1),
        "expected_saved_value": round(float((pop.churn * pop.response * pop.value)[t].sum()), 2),
        "cost": round(spent, 2),
        "cost_per_saved": round(spent / n_saved, 2) if n_saved else None,
    }


def compare(
    spec: SimSpec,
    modes: Sequence[Targeting] = TARGETINGS,
    policy: Policy | None = None,
    journeys: Mapping[str, JourneySpec] | None = None,
) -> dict[str, Any]:
    """Every mode on the same population and budget, with each one's share of the oracle."""
    results = {m: run(spec, m, policy, journeys) for m in dict.fromkeys([*modes, "oracle"])}
    oracle = results["oracle"]
    for r in results.values():
        for part, ref in ((r, oracle), (r["learned"], oracle["learned"])):
            best = ref["expected_saved_value"]
            part["oracle_share"] = round(part["expected_saved_value"] / best, 3) if best else None
    return {
        "customers": spec.customers,
        "days": spec.days,
        "seed": spec.seed,
        "modes": {m: results[m] for m in modes},
    }

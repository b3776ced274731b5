"""The simulator decides where the engine does: at the close of the UTC day of a customer's
signal, with the engine's trigger, time and so the engine's decision id."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tenure.features.instants import Cadence
from tenure.policy.decision import decision_id
from tenure.policy.experiments import NO_EVIDENCE
from tenure.policy.guardrails import GuardrailSettings
from tenure.policy.model import parse_policy
from tenure.runtime.pipeline import Pipeline
from tenure.sim.closed_loop import (
    SIM_POLICY,
    START,
    SimSpec,
    customer_id,
    decided_at,
    decision_of,
    instant_of,
    population,
    signals,
)
from tenure.store import queries
from tenure.store.db import Store
from tenure.times import iso, parse_instant
from tests.helpers import closed

POLICY = parse_policy(SIM_POLICY)
SPEC = SimSpec(customers=400, days=84)
# The simulator's own guardrails (`closed_loop._guardrails`): no caps, its control group.
GUARDRAILS = GuardrailSettings(
    caps=(), quiet_hours=None, control_share=SPEC.control_share, control_salt=f"sim-{SPEC.seed}"
)
CHANNELS = frozenset(a.channel for a in POLICY.actions)


def test_decisions_are_made_at_the_close_of_the_arrival_day() -> None:
    pop = population(SPEC)
    for i in range(60):
        day = int(pop.arrival[i])
        d = decision_of(i, pop, POLICY, GUARDRAILS, NO_EVIDENCE)
        assert d is not None
        at = parse_instant(d.decided_at)
        # 00:00 UTC of the day after the signal (which came at 12:00 that day).
        assert (at.hour, at.minute, at.second) == (0, 0, 0) and d.decided_at.endswith("T00:00:00Z")
        assert at == START.replace(hour=0) + dt.timedelta(days=day + 1) == decided_at(day)
        # The id the engine's decide() derives for this policy, customer and instant.
        key = f"{POLICY.id}\x1f{POLICY.content_hash}"
        assert d.decision_id == decision_id(key, customer_id(i), iso(at))
        assert d.customer_id == customer_id(i)
        assert d.trigger_event_id == f"{customer_id(i)}-usage-{day}"
        assert d.trigger_type == "usage"


def test_the_instant_and_trigger_are_the_engines() -> None:
    pop = population(SPEC)
    for i in range(20):
        events = signals(i, str(pop.segment[i]), int(pop.arrival[i]), CHANNELS)
        instant = instant_of(events, Cadence())
        assert instant.period and not instant.silences
        assert instant.at == int(decided_at(int(pop.arrival[i])).timestamp())
        assert instant.features.segment == pop.segment[i]
        assert instant.features.subscription_status == "active"
        assert instant.features.consented("email", "marketing")
        assert instant.newest == (f"{customer_id(i)}-usage-{int(pop.arrival[i])}", "usage")


def test_the_engine_decides_the_simulated_customers_with_the_same_ids(tmp_path: Path) -> None:
    """The simulated customers' events run through the engine: it decides each of them at the
    instant the simulator does, under the same decision id."""
    pop = population(SPEC)
    chosen = range(40)
    events = [
        e for i in chosen for e in signals(i, str(pop.segment[i]), int(pop.arrival[i]), CHANNELS)
    ]
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    Pipeline(store, POLICY, guardrails=GUARDRAILS, clock=closed(events)).run(iter(events), "sim")
    with store.reader() as conn:
        rows = queries.decisions(conn, limit=1000)
        engine = {
            r["customer_id"]: (r["decision_id"], queries.decision_record(conn, r["decision_id"]))
            for r in rows
        }
    simulated = {}
    for i in chosen:
        d = decision_of(i, pop, POLICY, GUARDRAILS, NO_EVIDENCE)
        assert d is not None
        simulated[d.customer_id] = d
    assert len(rows) == len(engine) == len(simulated) == 40
    for cid, d in simulated.items():
        did, record = engine[cid]
        assert record is not None
        assert (did, record["decided_at"]) == (d.decision_id, d.decided_at)
        assert (record["trigger_event_id"], record["seed"]) == (d.trigger_event_id, d.seed)

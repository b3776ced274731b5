"""One function for features at an instant: the pipeline's walk (`instants.advance`) and the
point-in-time training sets (`model train`, `model backtest`) give the same feature vector for
the same customer at the same instant, boundaries included (events at exactly midnight, events a
fraction of a second either side of it, cut-offs with a fraction of a second)."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import msgspec
import numpy as np
import orjson
import pytest

from tenure.events.envelope import Event
from tenure.events.parse import LineParser, RawLine
from tenure.features.instants import (
    ACTIVITY_TYPES,
    Cadence,
    Instant,
    Silence,
    advance,
    event_order,
    seconds,
)
from tenure.features.state import DAY_S, CustomerState
from tenure.features.training import Example, rolling_cutoffs, training_set
from tenure.policy.guardrails import GuardrailSettings
from tenure.policy.model import default_policy, parse_policy
from tenure.runtime.pipeline import Pipeline
from tenure.scoring import gbm
from tenure.sim.population import PopulationSpec, generate
from tenure.store import queries
from tenure.store.db import Store
from tests.fixtures.features import history
from tests.helpers import T0, ev

CADENCES = {
    "days": Cadence(),
    "days+silences": Cadence(
        silences=(
            Silence(ACTIVITY_TYPES, 7 * DAY_S),
            Silence(ACTIVITY_TYPES, 14 * DAY_S),
            Silence(frozenset({"payment.failed"}), 3 * DAY_S),
        )
    ),
    # Periods that are not days and a timer that is not whole hours: instants at odd seconds.
    "6h+odd-silence": Cadence(
        period_s=6 * 3600, silences=(Silence(ACTIVITY_TYPES, 2 * DAY_S + 4177),)
    ),
}


def _midnight(t: dt.datetime) -> dt.datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def _moved(e: Event, rng: random.Random) -> list[Event]:
    """`e`, maybe moved onto a boundary or off whole seconds, maybe with a same-second twin."""
    t = e.occurred_at.astimezone(dt.UTC)
    roll = rng.random()
    if roll < 0.15:
        t = _midnight(t)  # exactly at midnight: belongs to the day it opens
    elif roll < 0.25:
        t = _midnight(t) - dt.timedelta(microseconds=1)  # the last moment of the day before
    elif roll < 0.35:
        t = _midnight(t) + dt.timedelta(milliseconds=rng.randrange(1, 1000))
    elif roll < 0.6:
        t = t + dt.timedelta(microseconds=rng.randrange(1, 1_000_000))
    moved = msgspec.structs.replace(e, occurred_at=t)
    if rng.random() >= 0.1:
        return [moved]
    # A twin in the same whole second, earlier within it but later in id order.
    twin_at = t.replace(microsecond=rng.randrange(0, t.microsecond + 1))
    twin = msgspec.structs.replace(e, event_id=f"{e.event_id}~twin", occurred_at=twin_at)
    return [moved, twin]


def _events() -> list[Event]:
    """A simulated population and one customer of every family, moved onto the boundaries."""
    parser = LineParser()
    spec = PopulationSpec(customers=40, days=60, seed=13)
    parsed = [parser.parse(RawLine(i, orjson.dumps(e))) for i, e in enumerate(generate(spec), 1)]
    events = [e for e in parsed if isinstance(e, Event)]
    assert len(events) == len(parsed)
    start = dt.datetime.combine(spec.start, dt.time(9), dt.UTC)
    for e in history(17, n=400, days=60):
        events.append(msgspec.structs.replace(e, occurred_at=start + (e.occurred_at - T0)))
    rng = random.Random(2026)
    return [m for e in events for m in _moved(e, rng)]


EVENTS = _events()


def _walk(events: list[Event], cadence: Cadence) -> list[Instant]:
    """Every instant the pipeline's walk passes, from an empty state to well after the end."""
    by_customer: dict[str, list[Event]] = {}
    for e in events:
        by_customer.setdefault(e.customer_id, []).append(e)
    until = max(seconds(e) for e in events) + 20 * DAY_S
    out: list[Instant] = []
    for cid, evs in sorted(by_customer.items()):
        pending = sorted(evs, key=event_order)
        out += advance(CustomerState(cid), 0, pending, cadence, 0, until).instants
    return out


def _sample(instants: list[Instant], events: list[Event], seed: int) -> list[Instant]:
    """200 instants at random, and every one with an event in its own whole second (the
    boundary: such an event is not folded at that instant)."""
    at_instant = {(e.customer_id, seconds(e)) for e in events}
    edge = [i for i in instants if (i.customer_id, i.at) in at_instant]
    assert edge, "no event falls in an instant's own second: the boundary is not exercised"
    rest = [i for i in instants if (i.customer_id, i.at) not in at_instant]
    return edge + random.Random(seed).sample(rest, 200)


def _trained(events: list[Event], sample: list[Instant], seed: int) -> dict[tuple, Example]:
    """training_set at the sampled instants, half of them given with a fraction of a second
    (a cut-off stands for the whole second it falls in), by (customer, instant)."""
    rng = random.Random(seed)
    cutoffs = [
        dt.datetime.fromtimestamp(i.at, dt.UTC)
        + dt.timedelta(microseconds=rng.choice([0, rng.randrange(1, 1_000_000)]))
        for i in sample
    ]
    examples = training_set(events, cutoffs, horizon_days=30)
    return {(x.customer_id, int(x.cutoff.timestamp())): x for x in examples}


@pytest.mark.parametrize("name", list(CADENCES))
def test_training_features_equal_the_pipelines_at_sampled_instants(name: str) -> None:
    instants = _walk(EVENTS, CADENCES[name])
    sample = _sample(instants, EVENTS, seed=len(name))
    trained = _trained(EVENTS, sample, seed=len(name) + 1)
    compared = 0
    for inst in sample:
        got = trained.get((inst.customer_id, inst.at))
        if inst.features.subscription_status == "cancelled":
            assert got is None  # a training set leaves out who has already gone
            continue
        assert got is not None, (inst.customer_id, inst.at)
        assert got.cutoff == dt.datetime.fromtimestamp(inst.at, dt.UTC)
        assert got.features.to_record() == inst.features.to_record()
        assert got.features == inst.features
        compared += 1
    assert compared >= 150
    # The model's input vectors too, row for row.
    pairs = [
        (trained[(i.customer_id, i.at)].features, i.features)
        for i in sample
        if (i.customer_id, i.at) in trained
    ]
    left = gbm.matrix([p[0] for p in pairs])
    right = gbm.matrix([p[1] for p in pairs])
    assert np.array_equal(left, right, equal_nan=True)


def test_an_event_inside_the_cutoffs_second_is_a_label_not_a_feature() -> None:
    midnight = _midnight(T0) + dt.timedelta(days=10)
    events = [
        ev("usage", at=T0, event_id="u-0", minutes=5.0),
        ev("purchase", at=midnight - dt.timedelta(microseconds=1), event_id="p-before", amount=7),
        ev("purchase", at=midnight + dt.timedelta(milliseconds=300), event_id="p-after", amount=9),
    ]
    cutoff = midnight + dt.timedelta(milliseconds=500)  # stands for midnight itself
    (x,) = training_set(events, [cutoff], horizon_days=5)
    assert x.cutoff == midnight
    assert x.features.purchases_total == 1 and x.features.spend_total == 7
    assert x.features.last_seen == (midnight - dt.timedelta(seconds=1)).isoformat()
    assert (x.churned, x.purchases_after) == (False, 1)
    (walked,) = [i for i in _walk(events, Cadence()) if i.at == int(midnight.timestamp())]
    assert walked.features == x.features


def test_a_naive_cutoff_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        training_set([ev("usage", minutes=1.0)], [dt.datetime(2026, 3, 5)], horizon_days=5)


def test_rolling_cutoffs_are_whole_seconds() -> None:
    first = T0 + dt.timedelta(microseconds=700_001)
    cuts = rolling_cutoffs(first, first + dt.timedelta(days=90), horizon_days=30)
    assert cuts and all(c.microsecond == 0 for c in cuts)
    assert cuts[0] == T0 + dt.timedelta(days=28)


# Always at risk, re-evaluated at silence steps: the pipeline decides (and audits the features
# it decided on) at the first instant of every customer and at many silence timers.
SILENCE = parse_policy(
    {
        **default_policy().model_dump(mode="json"),
        "id": "silence",
        "trigger": {"risk_at_least": 0.0, "on_events": [], "after_silence": [3, 7, 14]},
        "guardrails": {"cooldown_days": 1},
    }
)


def test_the_pipelines_audited_features_equal_the_training_sets(tmp_path: Path) -> None:
    events = sorted(EVENTS, key=event_order)
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    no_control = GuardrailSettings(control_share=0.0)
    Pipeline(store, SILENCE, batch_size=97, guardrails=no_control).run(iter(events), "t")
    with store.reader() as conn:
        rows = queries.decisions(conn, limit=100_000)
        bodies = [queries.audit_body(conn, r["decision_id"]) for r in rows]
    store.close()
    audited = {
        (b["lineage"]["features"]["customer_id"], b["lineage"]["now"]): b["lineage"]["features"]
        for b in bodies
        if b is not None and b["lineage"] is not None
    }
    assert len(audited) >= 100
    cutoffs = sorted({dt.datetime.fromisoformat(now) for _, now in audited})
    trained = {
        (x.customer_id, x.cutoff): x.features.to_record()
        for x in training_set(events, cutoffs, horizon_days=30)
    }
    for (cid, now), features in audited.items():
        got = trained.get((cid, dt.datetime.fromisoformat(now)))
        if features["subscription_status"] == "cancelled":
            assert got is None  # a training set leaves out who has already gone
        else:
            assert got == features, (cid, now)

"""Time, not input, decides when customers are evaluated (features/instants.py).

Batching and reordering within the allowed lateness are invisible; the CLI's batch size is too;
silent customers are evaluated at exactly their silence steps, in replay and live (by sweeps,
which decide each instant once even when two of them race on one store).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tenure.cli import app
from tenure.config import DEFAULT_LATENESS_S
from tenure.events.envelope import Event, make_event
from tenure.events.parse import LineParser, RawLine
from tenure.features.instants import Cadence, Silence, advance
from tenure.features.state import CustomerState
from tenure.policy.guardrails import GuardrailSettings
from tenure.policy.model import Policy, default_policy, parse_policy
from tenure.runtime import pipeline as pipeline_module
from tenure.runtime.clock import FixedClock
from tenure.runtime.engine import learned
from tenure.runtime.pipeline import Pipeline
from tenure.services.views import customer_view
from tenure.store import queries, repo
from tenure.store.db import Store
from tests.fixtures.population import EAGER, population_lines
from tests.helpers import T0, closed, ev, live_decisions

DAY = dt.timedelta(days=1)
# EAGER, re-triggered also by silence steps of 2 to 7 days, with the shortest cooldown: decisions
# often (actions, journeys, caps), many of them at silence timers rather than day closes.
SILENT_EAGER = parse_policy(
    {
        **EAGER.model_dump(mode="json"),
        "id": "eager-silence",
        "trigger": {
            "risk_at_least": 0.05,
            "on_events": ["payment.failed", "support.ticket"],
            "after_silence": [2, 3, 5, 7],
        },
        "guardrails": {"cooldown_days": 1},
    }
)
# Always at risk, re-triggered only by silence: a decision at the first instant, then exactly one
# at every silence step (a day close alone is no signal), never suppressed for long.
SILENCE = parse_policy(
    {
        **default_policy().model_dump(mode="json"),
        "id": "silence",
        "trigger": {"risk_at_least": 0.0, "on_events": [], "after_silence": [7, 14, 30]},
        "guardrails": {"cooldown_days": 1},
    }
)
NO_CONTROL = GuardrailSettings(control_share=0.0)


def _parse(lines: list[bytes]) -> list[Event]:
    parser = LineParser()
    out = [parser.parse(RawLine(i, raw)) for i, raw in enumerate(lines, start=1)]
    assert all(isinstance(e, Event) for e in out)
    return sorted(out, key=lambda e: (e.occurred_at, e.event_id))  # type: ignore[union-attr]


_EVENTS = _parse(population_lines(customers=8, days=40, seed=11))


def outcome(store: Store) -> tuple[list[tuple[Any, ...]], list[bytes]]:
    """The live decisions and their audit bodies (decision and lineage), order-free."""
    with store.reader() as conn:
        rows = queries.decisions(conn, limit=100_000)
        bodies = [queries.audit_body(conn, r["decision_id"]) for r in rows]
    decisions = live_decisions(rows)
    assert all(b is not None for b in bodies)
    return decisions, sorted(json.dumps(b, sort_keys=True).encode() for b in bodies)


def _reference(root: Path, policy: Policy) -> tuple[list[tuple[Any, ...]], list[bytes]]:
    """One batch, in time order."""
    store = Store(f"sqlite:///{root / 'ref.db'}")
    Pipeline(store, policy, batch_size=100_000).run(iter(_EVENTS), "ref")
    got = outcome(store)
    store.close()
    assert got[0], "the reference run decides nothing: the comparison would be empty"
    return got


def jittered(events: list[Event], rng: random.Random, lateness_s: int) -> list[Event]:
    """Reordered, each event moved only past events less than `lateness_s` newer than it: a
    key of its time plus a jitter in [0, lateness)."""
    keyed = [
        (e.occurred_at.timestamp() + rng.randrange(lateness_s), i) for i, e in enumerate(events)
    ]
    return [events[i] for _, i in sorted(keyed)]


def _cut(events: list[Event], cuts: list[int]) -> list[list[Event]]:
    bounds = [0, *sorted(set(cuts)), len(events)]
    return [events[a:b] for a, b in itertools.pairwise(bounds) if b > a]


_REFERENCES: dict[str, tuple[list[tuple[Any, ...]], list[bytes]]] = {}


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rng=st.randoms(use_true_random=False),
    cuts=st.lists(st.integers(1, len(_EVENTS) - 1), max_size=12),
    batch_size=st.sampled_from([1, 2, 7, 50, 100_000]),
    way=st.sampled_from(["batch_size", "same_pipeline", "new_pipelines"]),
    silent=st.booleans(),
)
def test_batching_and_reordering_within_the_lateness_are_invisible(
    tmp_path_factory, rng, cuts, batch_size, way, silent
) -> None:
    policy = SILENT_EAGER if silent else EAGER
    root = tmp_path_factory.mktemp("batches")
    if policy.id not in _REFERENCES:
        _REFERENCES[policy.id] = _reference(root, policy)
    events = jittered(_EVENTS, rng, DEFAULT_LATENESS_S)
    store = Store(f"sqlite:///{root / 'b.db'}")
    late = 0
    if way == "batch_size":
        late += Pipeline(store, policy, batch_size=batch_size).run(iter(events), "t").late
    else:
        shared = Pipeline(store, policy, batch_size=batch_size)
        for part in _cut(events, cuts):
            # A new pipeline per part is a restart: it learns what the store knows, as the
            # engine builds every pipeline.
            pipeline = (
                shared
                if way == "same_pipeline"
                else Pipeline(
                    store, policy, batch_size=batch_size, history=learned(store).history()
                )
            )
            late += pipeline.run(iter(part), "t").late
    assert late == 0  # nothing was moved behind the watermark
    decisions, bodies = outcome(store)
    store.close()
    assert decisions == _REFERENCES[policy.id][0]
    assert bodies == _REFERENCES[policy.id][1]


# Regression: a silence timer made stale by activity (the customer came back before it fired)
# folded the events before it without an instant, which skipped the close of their day and,
# when the watermark stopped there, lost them from the next instant's trigger.
DAY = dt.timedelta(days=1)
_D0 = dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC)  # day 0, 09:00
_TWO_DAYS = Cadence(silences=(Silence(frozenset({"usage", "purchase"}), 2 * 86_400),))
_STALE_EVENTS = [
    make_event(
        "usage", event_id="u0", customer_id="c-1", occurred_at=_D0, payload={"minutes": 1.0}
    ),
    make_event(
        "usage",
        event_id="u2",
        customer_id="c-1",
        occurred_at=_D0 + 2 * DAY - dt.timedelta(hours=4),
        payload={"minutes": 1.0},
    ),
]


def _walk(stops: list[dt.datetime]) -> list[tuple[Any, ...]]:
    state, through, pending, floor = CustomerState("c-1"), 0, list(_STALE_EVENTS), 0
    out = []
    for stop in stops:
        until = int(stop.timestamp())
        a = advance(state, through, pending, _TWO_DAYS, floor, until)
        out += [(i.at, i.period, i.silences, i.seen_types, i.newest) for i in a.instants]
        state, through, pending, floor = a.state, a.through, a.pending, until
    return out


def test_the_close_of_a_day_with_events_is_an_instant_after_a_stale_timer() -> None:
    # Usage on day 0 at 09:00 and day 2 at 05:00: the 2-day timer of day 0 (day 2 09:00) is
    # stale; day 2 had an event, so its close (day 3 00:00) is an instant.
    closes = {at for at, period, *_ in _walk([_D0 + 10 * DAY]) if period}
    day_close = dt.datetime.combine(_D0.date(), dt.time(), dt.UTC)
    assert closes == {int((day_close + DAY).timestamp()), int((day_close + 3 * DAY).timestamp())}


def test_where_the_watermark_stops_changes_no_instant() -> None:
    # One walk to day 10, or two with a stop just after the stale timer (day 2 10:00).
    assert _walk([_D0 + 2 * DAY + dt.timedelta(hours=1), _D0 + 10 * DAY]) == _walk([_D0 + 10 * DAY])


def test_batching_changes_no_audit_record_with_silence_timers(tmp_path: Path) -> None:
    reference = _reference(tmp_path, SILENT_EAGER)
    store = Store(f"sqlite:///{tmp_path / 'b.db'}")
    Pipeline(store, SILENT_EAGER, batch_size=50).run(iter(_EVENTS), "t")
    got = outcome(store)
    store.close()
    assert got[0] == reference[0]  # the decisions agree; their trigger and lineage do not
    assert got[1] == reference[1]


def test_the_cli_batch_size_changes_no_decision(tmp_path: Path) -> None:
    runner = CliRunner()
    history = tmp_path / "h.jsonl"
    made = runner.invoke(
        app,
        ["generate", "--customers", "60", "--days", "40", "--seed", "21", "--out", str(history)],
    )
    assert made.exit_code == 0, made.output
    policy = tmp_path / "eager.yaml"
    policy.write_text(
        "id: eager\ntrigger: {risk_at_least: 0.05, after_silence: [7, 14]}\nactions:\n"
        "  - {id: email, channel: email, cost: 0.1, uplift: 0.05}\n"
    )
    listed = []
    for size in ("100", "1000", "40000"):
        ws = str(tmp_path / f"ws-{size}")
        args = ["run", "--events", str(history), "-w", ws, "--policy", str(policy)]
        ran = runner.invoke(app, [*args, "--batch-size", size, "--json"])
        assert ran.exit_code == 0, ran.output
        out = runner.invoke(app, ["decisions", "list", "--json", "--limit", "100000", "-w", ws])
        assert out.exit_code == 0, out.output
        rows = json.loads(out.stdout)
        listed.append(sorted(rows, key=lambda r: r["decision_id"]))
    assert len(listed[0]) > 0
    assert listed[0] == listed[1] == listed[2]


def _silent_history() -> list[Event]:
    """`silent` uses the product daily for 40 days then stops; `busy` goes on for 120."""
    out = [ev("subscription.started", "silent", at=0), ev("subscription.started", "busy", at=0)]
    out += [ev("usage", "silent", at=float(d), minutes=30) for d in range(40)]
    out += [ev("usage", "busy", at=float(d), minutes=30) for d in range(120)]
    return sorted(out, key=lambda e: (e.occurred_at, e.event_id))


def test_a_silent_customer_is_evaluated_at_exactly_its_silence_steps(tmp_path: Path) -> None:
    events = _silent_history()
    store = Store(f"sqlite:///{tmp_path / 'silence.db'}")
    summary = Pipeline(store, SILENCE, batch_size=37, guardrails=NO_CONTROL).run(iter(events), "t")
    last = T0 + 39 * DAY  # the silent customer's newest usage (12:00, not a day close)
    steps = {last + 7 * DAY, last + 14 * DAY, last + 30 * DAY}
    with store.reader() as conn:
        mine = queries.decisions(conn, customer_id="silent", limit=10_000)
        view = customer_view(conn, "silent")
    decided = {r["decided_at"] for r in mine}
    assert len(decided) == len(mine)  # one decision per instant
    assert {d for d in decided if d > last} == steps
    # Entering the at-risk band at the first day close, then only silence re-triggers.
    first_close = dt.datetime.combine(T0.date() + DAY, dt.time(), dt.UTC)
    assert decided == steps | {first_close}
    # Instants: 40 day closes and 3 timers for `silent`; `busy`'s closes up to the watermark
    # (its newest event at day 119 12:00, less two hours: days 0 to 118 have closed).
    assert summary.instants == 40 + 3 + 119
    assert summary.late == 0
    assert view is not None
    newest = T0 + 119 * DAY
    assert dt.datetime.fromisoformat(view["as_of"].replace("Z", "+00:00")) == newest
    assert view["features"]["days_since_last_activity"] == 80.0
    store.close()


def _decided(store: Store, customer: str = "c-1") -> list[dt.datetime]:
    with store.reader() as conn:
        rows = queries.decisions(conn, customer_id=customer, limit=10_000)
    return sorted(r["decided_at"] for r in rows)


def test_live_sweeps_decide_each_silence_instant_once(store_url: str) -> None:
    events = [ev("subscription.started", at=0)] + [ev("usage", at=float(d)) for d in range(10)]
    last = events[-1].occurred_at
    clock = closed(events)
    store = Store(store_url)
    pipeline = Pipeline(store, SILENCE, clock=clock, guardrails=NO_CONTROL)
    pipeline.run(iter(events), "t")
    before = _decided(store)
    assert before and max(before) < last + 7 * DAY
    clock.advance(15 * DAY)
    swept = pipeline.sweep()
    assert swept.instants == 2
    assert _decided(store) == sorted([*before, last + 7 * DAY, last + 14 * DAY])
    again = pipeline.sweep()
    assert again.instants == 0 and not again.decisions
    # Two sweepers, each with its own clock past the 30-day step, at once on one store.
    racers = [
        Pipeline(store, SILENCE, clock=FixedClock(clock.now() + 16 * DAY), guardrails=NO_CONTROL)
        for _ in range(2)
    ]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def sweep(p: Pipeline) -> None:
        try:
            barrier.wait()
            p.sweep()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=sweep, args=(p,)) for p in racers]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert errors == []
    after = _decided(store)
    assert after == sorted([*before, last + 7 * DAY, last + 14 * DAY, last + 30 * DAY])
    assert len(set(after)) == len(after)
    store.close()


def test_a_sweep_in_steps_decides_as_one_sweep(tmp_path: Path) -> None:
    """A sweep moves the watermark in steps of about a batch of customers each; the steps are
    invisible in what it decides (every instant still in time order across customers)."""
    got = []
    for size in (1, 3, 100_000):
        clock = closed(_EVENTS)
        store = Store(f"sqlite:///{tmp_path / f'sweep-{size}.db'}")
        Pipeline(store, SILENT_EAGER, clock=clock, batch_size=100_000).run(iter(_EVENTS), "t")
        clock.advance(40 * DAY)
        summary = Pipeline(store, SILENT_EAGER, clock=clock, batch_size=size).sweep()
        assert summary.instants > 8 and (summary.batches > 8) == (size == 1)
        with store.reader() as conn:
            assert repo.due_customers(conn, int(clock.now().timestamp()) - DEFAULT_LATENESS_S) == []
        got.append(outcome(store))
        store.close()
    assert got[0] == got[1] == got[2]


def test_a_pipeline_that_keeps_few_customers_in_memory_decides_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The customers kept between batches are a bounded cache: those evicted are read back."""
    monkeypatch.setattr(pipeline_module, "CACHED_CUSTOMERS", 2)
    store = Store(f"sqlite:///{tmp_path / 'small.db'}")
    pipeline = Pipeline(store, SILENT_EAGER, batch_size=50)
    pipeline.run(iter(_EVENTS), "t")
    assert len(pipeline._cache) <= 2
    got = outcome(store)
    store.close()
    assert got == _reference(tmp_path, SILENT_EAGER)

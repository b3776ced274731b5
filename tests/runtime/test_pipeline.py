"""The pipeline end to end on real stores: invariants 1, 2, 3, 4, 6 and 7 of the architecture."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tenure.audit.replay import replay
from tenure.events.parse import LineParser, RawLine
from tenure.features.state import CustomerState
from tenure.policy.model import default_policy, parse_policy
from tenure.runtime.clock import EventClock, FixedClock
from tenure.runtime.pipeline import Pipeline, RunSummary
from tenure.store import queries, repo
from tenure.store import schema as t
from tenure.store.db import Store
from tests.fixtures.population import EAGER, population_lines

POLICY = default_policy()


def run_lines(
    store: Store, lines: list[bytes], batch_size: int = 100_000, policy=POLICY, clock=None
) -> RunSummary:
    parser = LineParser()
    items = (parser.parse(RawLine(i, raw)) for i, raw in enumerate(lines, start=1))
    return Pipeline(store, policy, clock=clock, batch_size=batch_size).run(items, "test")


def snapshot_of(store: Store) -> dict:
    """Everything a run leaves that must not depend on order: states, decisions, audit, outbox."""
    with store.reader() as conn:
        states = {
            r["customer_id"]: (CustomerState.from_record(r["state"]), r["memory"])
            for r in repo.rows(conn, select(t.customers))
        }
        decisions = {r["decision_id"]: r["record"] for r in repo.rows(conn, select(t.decisions))}
        audit = [(r.seq, r.hash) for r in repo.audit_records(conn)]
        outbox = sorted(r["idempotency_key"] for r in repo.rows(conn, select(t.outbox)))
    return {"states": states, "decisions": decisions, "audit": audit, "outbox": outbox}


def test_running_the_same_input_twice_changes_nothing_but_duplicates(store_url: str) -> None:
    store = Store(store_url)
    lines = population_lines()
    bad = [b"{oops", b'{"type": "usage"}', b""]
    lines = lines[:100] + bad + lines[100:]
    first = run_lines(store, lines, batch_size=500, policy=EAGER)
    assert first.accepted == len(lines) - len(bad) and sum(first.decisions.values()) > 0
    with store.reader() as conn:
        before = queries.stats(conn)
    after_first = snapshot_of(store)
    second = run_lines(store, lines, batch_size=500, policy=EAGER)
    assert second.duplicates == second.read - len(bad) == len(lines) - len(bad)
    assert second.rejected == len(bad)
    assert second.accepted == 0 and not second.decisions
    with store.reader() as conn:
        after = queries.stats(conn)
    assert after.pop("duplicates") == len(lines) - len(bad)
    before.pop("duplicates")
    # Each run keeps its own rejects (a rerun shows its own reasons): the second run's are added.
    assert after.pop("rejects") == 2 * before.pop("rejects") == 2 * len(bad)
    assert after == before
    assert snapshot_of(store) == after_first
    store.close()


def test_nothing_lost_counts_add_up(store_url: str, tmp_path: Path) -> None:
    store = Store(store_url)
    good = population_lines(customers=5, days=10)
    bad = [
        b"{oops",
        b"",
        b'{"type":"usage"}',
        b"\xff\xfe",
        b'{"event_id":"x","type":"usage","customer_id":"c","occurred_at":"2026-01-01T00:00:00"}',
        b'{"event_id":"y","type":"warp","customer_id":"c","occurred_at":"2026-01-01T00:00:00Z"}',
    ]
    mixed = list(good)
    rng = random.Random(5)
    positions = sorted(rng.sample(range(len(mixed)), len(bad)))
    for pos, raw in zip(positions, bad, strict=True):
        mixed.insert(pos, raw)
    mixed.append(good[0])  # and a duplicate
    s = run_lines(store, mixed, batch_size=37)
    assert s.read == len(mixed) == s.accepted + s.duplicates + s.rejected
    assert (s.accepted, s.duplicates, s.rejected) == (len(good), 1, len(bad))
    with store.reader() as conn:
        rejects = queries.rejects(conn)
        assert repo.count(conn, t.events) == len(good)
    assert [r["line_no"] for r in rejects] == [i for i, raw in enumerate(mixed, 1) if raw in bad]
    with store.reader() as conn:
        raws = conn.execute(select(t.rejects.c.raw).order_by(t.rejects.c.id)).scalars().all()
    assert [bytes(r) for r in raws] == [raw for raw in mixed if raw in bad]
    assert {r["field"] for r in rejects} == {"line", "type", "occurred_at", "event_id"}
    assert all(r["reason"] for r in rejects)
    store.close()


def test_every_decision_replays_exactly_from_its_audit_record(store_url: str) -> None:
    store = Store(store_url)
    run_lines(store, population_lines(), batch_size=300, policy=EAGER)
    with store.reader() as conn:
        ids = [r["decision_id"] for r in queries.decisions(conn, limit=10_000)]
        assert ids
        for decision_id in ids:
            body = queries.audit_body(conn, decision_id)
            assert body is not None
            policy = parse_policy(repo.policy_content(conn, body["lineage"]["policy_hash"]))
            assert replay(body, policy).to_record() == body["decision"]
        checked, broken, head = queries.verify_audit(conn)
    assert broken is None and checked == head == len(ids)
    store.close()


def test_actions_reach_the_outbox_in_the_same_transaction(store_url: str) -> None:
    store = Store(store_url)
    s = run_lines(store, population_lines(), batch_size=250, policy=EAGER)
    with store.reader() as conn:
        actions = queries.decisions(conn, status="action", limit=10_000)
        keys = {r["idempotency_key"] for r in repo.rows(conn, select(t.outbox))}
    assert len(actions) == s.decisions["action"] > 0
    assert keys == {f"{a['decision_id']}:start" for a in actions}
    store.close()


def test_decisions_happen_at_instants_of_event_time_not_wall_time(tmp_path: Path) -> None:
    lines = population_lines()
    a = Store(f"sqlite:///{tmp_path / 'a.db'}")
    run_lines(a, lines, batch_size=400, policy=EAGER, clock=EventClock())
    with a.reader() as conn:
        rows = repo.rows(
            conn,
            select(
                t.decisions.c.decided_at, t.decisions.c.trigger_event_id, t.events.c.occurred_at
            ).join(t.events, t.events.c.event_id == t.decisions.c.trigger_event_id),
        )
    # At the close of the (UTC) day of the newest event that led to it.
    assert rows
    for r in rows:
        day = r["occurred_at"].date()
        assert r["decided_at"] == dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
    # A live clock far ahead: the first batch's instants are due at once, and decided at their
    # own times, never the clock's; every later event is behind the watermark (late).
    b = Store(f"sqlite:///{tmp_path / 'b.db'}")
    live = run_lines(
        b, lines, batch_size=400, policy=EAGER, clock=FixedClock(dt.datetime(2030, 1, 1))
    )
    with a.reader() as conn, b.reader() as other:
        first = set(conn.execute(select(t.decisions.c.decided_at)).scalars())
        second = set(other.execute(select(t.decisions.c.decided_at)).scalars())
    assert second and second <= first
    assert live.late == live.accepted - 400 + live.rejected


def batch_strategy():
    return st.tuples(st.integers(0, 50), st.randoms(use_true_random=False), st.booleans())


_LINES = population_lines(customers=12, days=45, seed=9)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=batch_strategy())
def test_any_permutation_of_a_batch_or_feeding_it_twice_gives_the_same_result(
    tmp_path_factory, case
) -> None:
    start, rng, twice = case
    batch = _LINES[start * 20 : start * 20 + 600]
    shuffled = list(batch)
    rng.shuffle(shuffled)
    root = tmp_path_factory.mktemp("perm")
    a = Store(f"sqlite:///{root / 'a.db'}")
    run_lines(a, batch, policy=EAGER)
    b = Store(f"sqlite:///{root / 'b.db'}")
    run_lines(b, shuffled + (shuffled if twice else []), policy=EAGER)
    assert snapshot_of(a) == snapshot_of(b)
    a.close()
    b.close()


def test_a_late_event_updates_state_but_never_a_past_instant(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'late.db'}")

    def line(eid: str, at: str, etype: str = "usage") -> bytes:
        return orjson.dumps(
            {"event_id": eid, "type": etype, "customer_id": "c-1", "occurred_at": at, "payload": {}}
        )

    run_lines(
        store,
        [
            line("s", "2026-03-01T00:00:00Z", "subscription.started"),
            line("a", "2026-03-10T00:00:00Z"),
            line("b", "2026-03-12T09:00:00Z"),
        ],
        policy=EAGER,
    )
    with store.reader() as conn:
        before = set(conn.execute(select(t.decisions.c.decision_id)).scalars())
    late = run_lines(store, [line("late", "2026-03-02T00:00:00Z", "payment.failed")], policy=EAGER)
    assert late.late == 1 and late.instants == 0
    with store.reader() as conn:
        after = set(conn.execute(select(t.decisions.c.decision_id)).scalars())
        (state,) = repo.load_customers(conn, ["c-1"]).values()
    assert after == before  # nothing decided behind the watermark
    assert CustomerState.from_record(state[0]).totals["payment"] == (1, 0)  # but it is known


def test_escalations_become_human_tasks_in_the_outbox(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'h.db'}")
    data = EAGER.model_dump(mode="json")
    data["escalations"] = [{"when": "true", "queue": "retention-desk"}]
    run_lines(store, population_lines(customers=30, days=40), policy=parse_policy(data))
    with store.reader() as conn:
        kinds = {r["kind"] for r in repo.rows(conn, select(t.outbox))}
        statuses = set(conn.execute(select(t.decisions.c.status)).scalars())
    assert kinds == {"human.task"} and "human" in statuses and "action" not in statuses

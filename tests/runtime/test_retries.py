"""A batch that does not commit leaves nothing behind, in the store or in the pipeline.

PostgreSQL breaks a deadlock by aborting one of the transactions in it (two writers merging the
same ids lock them in opposite orders). Such a batch runs again, and the run ends exactly as an
uninterrupted one: the same live decisions, audit bodies, counts and learned uplift history. A
batch that fails for any other reason raises, and the pipeline (the API keeps one for its
lifetime) forgets what that batch learned, so the next input decides as if it never ran. On
PostgreSQL, a real deadlock between a run and another writer is broken and the run completes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg.errors
import pytest
import sqlalchemy as sa

from tenure.events.parse import LineParser, RawLine
from tenure.policy.model import default_policy
from tenure.runtime import pipeline as pipeline_module
from tenure.runtime.pipeline import Pipeline, RunSummary
from tenure.store import repo
from tenure.store import schema as t
from tenure.store.db import Store, retryable
from tests.fixtures.population import population_lines
from tests.helpers import live_decisions

BATCH = 400
# The batch that fails: one that decides and sees cancellations (the seventh of ten).
FAILING = 7


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return population_lines(customers=80, days=60, seed=5)


def _items(lines: list[bytes]) -> Iterator[Any]:
    parser = LineParser()
    return (parser.parse(RawLine(i, raw)) for i, raw in enumerate(lines, 1))


def _deadlock() -> sa.exc.OperationalError:
    return sa.exc.OperationalError(
        "UPDATE watermark", {}, psycopg.errors.DeadlockDetected("deadlock detected")
    )


class _FailOnce:
    """`real`, raising `error` on its `at`-th call instead (inside a batch's transaction, after
    the batch has decided and learned)."""

    def __init__(self, real: Callable[..., Any], at: int, error: BaseException) -> None:
        self.real, self.at, self.error, self.calls = real, at, error, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self.at:
            raise self.error
        return self.real(*args, **kwargs)


def _outcome(store: Store, p: Pipeline, summary: RunSummary | None = None) -> dict[str, Any]:
    with store.reader() as conn:
        decisions = [dict(r._mapping) for r in conn.execute(sa.select(t.decisions))]
        bodies = list(conn.execute(sa.select(t.audit.c.body).order_by(t.audit.c.seq)).scalars())
    out = {
        "decisions": live_decisions(decisions),
        "audit": bodies,
        "learned": list(p.history.decided),
        "cancellations": {k: v for k, v in p.history.cancellations.items() if v},
    }
    if summary is not None:
        out["summary"] = {k: v for k, v in summary.to_record().items() if k != "run_id"}
    return out


def _run(path: Path, lines: list[bytes]) -> tuple[Store, Pipeline, RunSummary]:
    store = Store(f"sqlite:///{path}")
    p = Pipeline(store, default_policy(), batch_size=BATCH)
    return store, p, p.run(_items(lines), "history")


def test_a_batch_aborted_by_a_deadlock_runs_again_and_the_run_ends_as_an_uninterrupted_one(
    tmp_path: Path, lines: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, p, summary = _run(tmp_path / "once.db", lines)
    expected = _outcome(store, p, summary)
    assert expected["learned"] and expected["cancellations"], "the history must learn"

    failing = _FailOnce(repo.advance_watermark, FAILING, _deadlock())
    monkeypatch.setattr(pipeline_module.repo, "advance_watermark", failing)
    store2, p2, summary2 = _run(tmp_path / "retried.db", lines)
    assert failing.calls > FAILING  # that batch failed once and ran again, and the run went on
    assert _outcome(store2, p2, summary2) == expected


def test_a_failed_batch_is_forgotten_by_the_pipeline_that_keeps_going(
    tmp_path: Path, lines: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, p, _ = _run(tmp_path / "head.db", lines[: (FAILING - 1) * BATCH])
    after_head = _outcome(store, p)
    full_store, full_p, _ = _run(tmp_path / "full.db", lines)
    full = _outcome(full_store, full_p)

    failing = _FailOnce(repo.advance_watermark, FAILING, RuntimeError("disk full"))
    monkeypatch.setattr(pipeline_module.repo, "advance_watermark", failing)
    store2 = Store(f"sqlite:///{tmp_path / 'failed.db'}")
    p2 = Pipeline(store2, default_policy(), batch_size=BATCH)
    with pytest.raises(RuntimeError, match="disk full"):
        p2.run(_items(lines), "history")
    # The batches before it committed; it left nothing in the store or the learned history.
    assert _outcome(store2, p2) == after_head

    # The same pipeline takes the input again from the failed batch on (an API client's retry).
    p2.run(_items(lines[(FAILING - 1) * BATCH :]), "history, again")
    assert _outcome(store2, p2) == full


def test_only_deadlocks_and_serialization_failures_are_retried() -> None:
    assert retryable(_deadlock())
    serial = psycopg.errors.SerializationFailure("could not serialize")
    assert retryable(sa.exc.OperationalError("COMMIT", {}, serial))
    unique = psycopg.errors.UniqueViolation("duplicate key")
    assert not retryable(sa.exc.IntegrityError("INSERT", {}, unique))
    assert not retryable(RuntimeError("disk full"))


def _customer(line: bytes) -> str:
    return line.split(b'"customer_id":"')[1].split(b'"')[0].decode()


def test_a_real_deadlock_on_postgresql_is_broken_and_the_run_completes(
    postgres_url: str, lines: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer holds customer B and then asks for A while a batch holding A waits for
    B (the orders two writers merging the same ids can take them in): PostgreSQL aborts the
    batch, which runs again once the other writer has committed."""
    store = Store(postgres_url)
    Pipeline(store, default_policy(), batch_size=BATCH).run(_items(lines[:BATCH]), "history")
    later = lines[BATCH:]
    known = sorted({_customer(x) for x in lines[:BATCH]} & {_customer(x) for x in later})
    a, b = known[0], known[-1]  # both stored already: the writer locks existing rows
    batch = [x for c in (a, b) for x in [y for y in later if _customer(y) == c][:2]]

    other = sa.create_engine(postgres_url)
    holding, batch_holds_a, outcome = threading.Event(), threading.Event(), {}

    def writer() -> None:
        try:
            with other.begin() as conn:
                # Slower to look for a deadlock than the batch: the batch is the one aborted.
                conn.execute(sa.text("SET LOCAL deadlock_timeout = '5s'"))
                repo.lock_customers(conn, [b])
                holding.set()
                assert batch_holds_a.wait(30)
                time.sleep(0.2)  # the batch is waiting for B by now
                repo.lock_customers(conn, [a])
            outcome["writer"] = "committed"
        except sa.exc.DBAPIError as exc:  # pragma: no cover - the wrong one was aborted
            outcome["writer"] = repr(exc)

    real = repo.lock_customers
    passes: list[list[str]] = []

    def a_first(conn: sa.Connection, ids: list[str]) -> None:
        passes.append(list(ids))
        real(conn, [a])
        batch_holds_a.set()
        real(conn, list(ids))

    thread = threading.Thread(target=writer)
    thread.start()
    assert holding.wait(10)
    monkeypatch.setattr(pipeline_module.repo, "lock_customers", a_first)
    summary = Pipeline(store, default_policy(), batch_size=BATCH).run(_items(batch), "late")
    thread.join(30)
    assert outcome == {"writer": "committed"}
    assert summary.accepted == len(batch) and summary.batches == 1
    assert [p for p in passes if b in p], "the batch locked B"
    assert len([p for p in passes if b in p]) >= 2, "the aborted batch ran again"
    with store.reader() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(t.events)).scalar_one()
    assert stored == BATCH + len(batch)
    other.dispose()
    store.close()

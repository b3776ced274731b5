"""Ingest throughput: the pipeline against a raw SQLite insert of the same rows.

Generates a 200,000-event history, runs `tenure`'s pipeline on it into a fresh SQLite workspace
(parse, validate, deduplicate, features, scoring, decisions, audit, outbox), then inserts the same
rows with plain `sqlite3.executemany` into a bare table with the same columns and the unique
`event_id` key, in batches of the same size. Prints both rates and their ratio.

Two more figures say where the pipeline's own floor lies: parsing the file alone, and writing the
parsed events into tenure's event log alone (the store's insert, with the log's index by customer
and time and the store's pragmas), each as a ratio to the raw insert. What is left after those is
perceiving (folds, instants, briefs), deciding and writing customers, decisions and audit.

    python benchmarks/ingest.py [--events 200000] [--batch-size N]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import orjson

from tenure.events.envelope import Event
from tenure.events.parse import LineParser, read_lines
from tenure.policy.model import default_policy
from tenure.runtime.pipeline import DEFAULT_BATCH_SIZE, Pipeline
from tenure.scoring.model import ModelScorer
from tenure.scoring.types import Scorer
from tenure.services import models
from tenure.sim.population import PopulationSpec, write_jsonl
from tenure.store import repo
from tenure.store.db import Store


def raw_insert(path: Path, db: Path, batch_size: int) -> float:
    """Seconds to insert the file's rows with bare sqlite3 (rows prepared beforehand)."""
    rows = []
    with path.open("rb") as fh:
        for line in fh:
            e = orjson.loads(line)
            rows.append(
                (
                    e["event_id"],
                    e["type"],
                    e["customer_id"],
                    e["occurred_at"],
                    e["source"],
                    e["partner_id"],
                    e["schema_version"],
                    orjson.dumps(e["payload"]).decode(),
                )
            )
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE events (event_id TEXT PRIMARY KEY, type TEXT, customer_id TEXT, "
        "occurred_at TEXT, source TEXT, partner_id TEXT, schema_version INTEGER, "
        "payload TEXT)"
    )
    start = time.perf_counter()
    for i in range(0, len(rows), batch_size):
        conn.executemany(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows[i : i + batch_size]
        )
        conn.commit()
    seconds = time.perf_counter() - start
    conn.close()
    return seconds


def pipeline_run(
    path: Path, workspace: Path, batch_size: int, scorer: Scorer | None = None
) -> tuple[float, int, int, int]:
    """Seconds for the full pipeline, events accepted, decisions made, instants evaluated."""
    store = Store(f"sqlite:///{workspace / 'tenure.db'}")
    pipeline = Pipeline(store, default_policy(), batch_size=batch_size, scorer=scorer)
    parser = LineParser()
    start = time.perf_counter()
    with path.open("rb") as fh:
        summary = pipeline.run(parser.parse_stream(fh), str(path))
    seconds = time.perf_counter() - start
    store.close()
    return seconds, summary.accepted, sum(summary.decisions.values()), summary.instants


def parse_only(path: Path) -> tuple[float, list[Event]]:
    """Seconds to parse and validate the file, and its events."""
    parser = LineParser()
    start = time.perf_counter()
    with path.open("rb") as fh:
        events = [e for e in parser.parse_stream(fh) if isinstance(e, Event)]
    return time.perf_counter() - start, events


def event_log_only(events: list[Event], workspace: Path, batch_size: int) -> float:
    """Seconds to append parsed events to tenure's event log alone, a batch per transaction."""
    store = Store(f"sqlite:///{workspace / 'tenure.db'}")
    start = time.perf_counter()
    for i in range(0, len(events), batch_size):
        with store.transaction() as conn:
            repo.insert_events(conn, events[i : i + batch_size])
    seconds = time.perf_counter() - start
    store.close()
    return seconds


def trained_scorer(path: Path) -> Scorer:
    """A classifier trained on the file's own history, as the pipeline would use when active."""
    parser = LineParser()
    with path.open("rb") as fh:
        events = [
            e for e in (parser.parse(line) for line in read_lines(fh)) if isinstance(e, Event)
        ]
    return ModelScorer("bench", models.train(events, horizon_days=30).bundle)


def main() -> None:
    """Run both and print figures and the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    ap.add_argument("--baseline-only", action="store_true", help="skip the model-scored run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = root / "events.jsonl"
        # Enough days of the default 2,000-customer population to reach the event count.
        days = max(30, args.events * 90 // 120_000 + 10)
        n = write_jsonl(PopulationSpec(customers=2000, days=days, seed=11), path, limit=args.events)
        (root / "ws").mkdir()
        p_seconds, accepted, decisions, instants = pipeline_run(path, root / "ws", args.batch_size)
        r_seconds = raw_insert(path, root / "raw.db", args.batch_size)
        parse_seconds, parsed = parse_only(path)
        (root / "ws-log").mkdir()
        log_seconds = event_log_only(parsed, root / "ws-log", args.batch_size)
        del parsed
        model_run = None
        if not args.baseline_only:
            # The same input scored by a classifier trained on it beforehand (not timed).
            scorer = trained_scorer(path)
            (root / "ws-model").mkdir()
            model_run = pipeline_run(path, root / "ws-model", args.batch_size, scorer)
    r_rate = n / r_seconds
    print(f"events                   {n}")
    print(f"batch size               {args.batch_size}")
    print(f"raw sqlite executemany   {r_seconds:8.2f} s  {r_rate:10,.0f} events/s")
    print(
        f"pipeline, baseline       {p_seconds:8.2f} s  {n / p_seconds:10,.0f} events/s "
        f"({accepted} accepted, {decisions} decisions)"
    )
    print(
        f"  instants evaluated     {instants:8,}    {instants / p_seconds:10,.0f} per second "
        f"({instants / n:.2f} per event)"
    )
    if model_run is not None:
        m_seconds, _, m_decisions, _ = model_run
        print(
            f"pipeline, gbm model      {m_seconds:8.2f} s  {n / m_seconds:10,.0f} events/s "
            f"({m_decisions} decisions)"
        )
    print(f"parse only               {parse_seconds:8.2f} s  {n / parse_seconds:10,.0f} events/s")
    print(f"event log insert only    {log_seconds:8.2f} s  {n / log_seconds:10,.0f} events/s")
    print(f"ratio baseline / raw     {n / p_seconds / r_rate:8.3f}")
    both = parse_seconds + log_seconds
    print(f"ratio parse + log / raw  {n / both / r_rate:8.3f}  (no folds, instants or decisions)")
    if model_run is not None:
        print(f"ratio gbm model / raw    {n / model_run[0] / r_rate:8.3f}")


if __name__ == "__main__":
    main()

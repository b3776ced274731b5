"""Concurrent `tenure run` processes into one workspace lose nothing and store nothing twice.

Two, then four processes at once against SQLite and PostgreSQL. Two: one on every other line of
the history, one on all of it, so half the events race as identical lines and the other half
land on the same customers from a different file. Four: two on different files that share every
customer (each holds every other line) and two on the whole history, so different and identical
files race in the same run. Every event is stored once, each customer's state equals that of a
sequential run of the same files, every run's counts add up and together they account for every
line, and no process fails. The store is also opened by four processes at once on a fresh
database (the migrations must not race).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tenure.events.parse import LineParser, RawLine
from tenure.features.state import CustomerState, apply_all
from tenure.policy.model import default_policy
from tenure.runtime.pipeline import Pipeline
from tenure.store import repo
from tenure.store import schema as t
from tenure.store.db import Store
from tests.fixtures.population import population_lines

RUN = [sys.executable, "-m", "tenure", "run"]
# Which lines of the history each process runs: (start, step) of a slice.
LAYOUTS = {
    "two": [(0, 2), (0, 1)],
    "four": [(0, 2), (1, 2), (0, 1), (0, 1)],
}


def _files(tmp: Path, layout: str) -> list[Path]:
    lines = population_lines(customers=50, days=40, seed=11)
    paths = []
    for i, (start, step) in enumerate(LAYOUTS[layout]):
        part = lines[start::step]
        path = tmp / f"part-{i}.jsonl"
        path.write_bytes(b"\n".join(part) + b"\n")
        paths.append(path)
    return paths


def _run_all(paths: list[Path], ws: Path, url: str) -> None:
    env = {**os.environ, "TENURE_DATABASE_URL": url}
    procs = [
        subprocess.Popen(
            [*RUN, "--events", str(p), "-w", str(ws), "--batch-size", "250", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for p in paths
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err.decode()[-2000:]


def _run_in_turn(paths: list[Path], url: str) -> None:
    """The same files one after another, in this process: what the concurrent runs must equal."""
    store = Store(url)
    parser = LineParser()
    for path in paths:
        lines = path.read_bytes().splitlines()
        items = (parser.parse(RawLine(i, raw)) for i, raw in enumerate(lines, 1))
        Pipeline(store, default_policy(), batch_size=250).run(items, str(path))
    store.close()


def _states(url: str) -> dict[str, dict]:
    """Each customer's full state: the stored fold and the events still waiting for their
    instant (where the fold stops depends on how the writers interleaved; the sum does not)."""
    store = Store(url)
    with store.reader() as conn:
        ids = list(conn.execute(sa.select(t.customers.c.customer_id)).scalars())
        loaded = repo.load_timed_customers(conn, ids)
        waiting = repo.pending_events(conn, {cid: row[3] for cid, row in loaded.items()})
    store.close()
    out = {}
    for cid, (state, _, _, _) in loaded.items():
        full = apply_all(CustomerState.from_record(state), waiting.get(cid, []))
        record = full.to_record()
        record["purchase_days"] = sorted(record["purchase_days"])  # a set: no order to compare
        out[cid] = record
    return out


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_concurrent_runs_equal_a_sequential_run(
    tmp_path: Path, store_url: str, layout: str
) -> None:
    paths = _files(tmp_path, layout)
    _run_all(paths, tmp_path / "ws", store_url)
    reference = f"sqlite:///{tmp_path / 'sequential.db'}"
    _run_in_turn(paths, reference)

    unique = len({line for p in paths for line in p.read_bytes().splitlines() if line})
    store = Store(store_url)
    with store.reader() as conn:
        events = repo.count(conn, t.events)
        runs = conn.execute(sa.select(t.runs)).mappings().all()
        placeholders = repo.count(conn, t.customers, t.customers.c.version == 0)
    store.close()
    assert events == unique
    assert placeholders == 0
    assert len(runs) == len(paths)
    for r in runs:
        assert r["read"] == r["accepted"] + r["duplicates"] + r["rejected"]
        assert r["finished_at"] is not None
    assert sum(r["accepted"] for r in runs) == unique
    assert sum(r["read"] for r in runs) == sum(len(p.read_bytes().splitlines()) for p in paths)
    assert _states(store_url) == _states(reference)


def test_four_processes_open_a_fresh_store_at_once(store_url: str) -> None:
    code = "import sys; from tenure.store.db import Store; Store(sys.argv[1]).close()"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, store_url], stderr=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for _ in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]

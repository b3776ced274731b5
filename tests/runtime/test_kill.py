"""`kill -9` of `tenure run` mid-file, then a re-run of the same file: the same decisions as one
uninterrupted run.

A generated history runs in a subprocess with a small batch size; once some of its batches have
committed (read from the store, read-only) the process gets SIGKILL. The same command then runs
the file again to completion. Each batch is one transaction, so the killed batch left nothing,
the committed ones are duplicates on the re-run, and pending instants resume from the store: the
live decisions (id, customer, instant, status, action, guardrail) equal those of a second
workspace that ran the file once, every event is stored exactly once, no decision, audit record
or outbox row is orphaned or doubled, and the audit chain verifies. On SQLite (each workspace's
own file) and PostgreSQL (TENURE_DATABASE_URL).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from tenure.cli import app
from tenure.store import schema as t
from tests.helpers import live_decisions

BATCH = "500"
# About 22,000 events: some seconds of batches of 500, so the kill lands well inside the file.
GENERATE = ["--customers", "500", "--days", "60", "--seed", "17"]
RUN = [sys.executable, "-m", "tenure", "run"]
# Stats that must equal an uninterrupted run's: nothing lost, nothing stored twice.
COUNTED = ("events", "rejects", "customers", "decisions", "audit_records", "outbox")


@dataclass(frozen=True)
class Side:
    """One workspace, and the database it stores in (None: the workspace's own SQLite file)."""

    ws: Path
    url: str | None

    def env(self) -> dict[str, str | None]:
        """Variables for the CLI: this side's database and nothing inherited that overrides it."""
        return {"TENURE_DATABASE_URL": self.url, "TENURE_WORKSPACE": None}

    def process_env(self) -> dict[str, str]:
        """The environment of a `tenure` subprocess on this side."""
        base = {k: v for k, v in os.environ.items() if k not in self.env()}
        return {**base, **{k: v for k, v in self.env().items() if v is not None}}

    def read_url(self) -> str:
        """The store, opened so that looking cannot write (SQLite: read-only, never created)."""
        return self.url or f"sqlite:///file:{self.ws / 'tenure.db'}?mode=ro&uri=true"


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The generated file and its number of events (one per line, each event id once)."""
    path = tmp_path_factory.mktemp("kill") / "history.jsonl"
    made = CliRunner().invoke(app, ["generate", *GENERATE, "--out", str(path)])
    assert made.exit_code == 0, made.output
    lines = path.read_bytes().splitlines()
    assert len({json.loads(line)["event_id"] for line in lines}) == len(lines)
    return path, len(lines)


@pytest.fixture
def sides(store_url: str, tmp_path: Path) -> Iterator[tuple[Side, Side]]:
    """The killed workspace and the uninterrupted one, on the same backend: on SQLite each its
    own workspace file; on PostgreSQL `store_url` and a second fresh database beside it."""
    if store_url.startswith("sqlite"):
        yield Side(tmp_path / "killed", None), Side(tmp_path / "whole", None)
        return
    url = sa.engine.make_url(store_url)
    name = f"{url.database}_whole"
    # No pool: an idle session left on the killed run's database would look like its own.
    admin = sa.create_engine(store_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    whole = url.set(database=name).render_as_string(hide_password=False)
    yield Side(tmp_path / "killed", store_url), Side(tmp_path / "whole", whole)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def _stored(engine: sa.Engine) -> int:
    """Events committed so far; 0 while the store or its tables do not exist yet."""
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t.events)).scalar_one())
    except sa.exc.DBAPIError:
        return 0


def _settle(engine: sa.Engine) -> None:
    """PostgreSQL: wait until the killed client's server session has ended, so a COMMIT it sent
    just before dying is counted (or rolled back) before the store is looked at."""
    if engine.dialect.name != "postgresql":
        return
    others = sa.text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND backend_type = 'client backend'"
    )
    deadline = time.monotonic() + 30
    while True:
        with engine.connect() as conn:
            if conn.execute(others).scalar_one() == 0:
                return
        assert time.monotonic() < deadline, "the killed run's session is still open after 30 s"
        time.sleep(0.05)


def _kill_mid_file(side: Side, events: Path, total: int, log: Path) -> int:
    """Start `tenure run`, SIGKILL it once a quarter of the file has committed; the events the
    store then holds."""
    args = [*RUN, "--events", str(events), "-w", str(side.ws), "--batch-size", BATCH]
    engine = sa.create_engine(side.read_url(), poolclass=sa.pool.NullPool)
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            args, env=side.process_env(), stdout=subprocess.DEVNULL, stderr=stderr
        )
        try:
            deadline = time.monotonic() + 120
            while _stored(engine) < total // 4:
                assert proc.poll() is None, f"the run ended before the kill: {log.read_text()}"
                assert time.monotonic() < deadline, "no quarter of the file committed in 120 s"
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == -signal.SIGKILL, log.read_text()
    _settle(engine)
    stored = _stored(engine)
    engine.dispose()
    return stored


def _cli(side: Side, *args: str) -> Any:
    """A read-only CLI command on this side, in this process; its JSON output."""
    done = CliRunner().invoke(app, [*args, "-w", str(side.ws), "--json"], env=side.env())
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def _decisions(side: Side) -> list[tuple[Any, ...]]:
    """What identifies each live decision: id, customer, instant, status, action, guardrail."""
    return live_decisions(_cli(side, "decisions", "list", "--limit", "1000000"))


def _run_whole(side: Side, events: Path) -> dict[str, Any]:
    """`tenure run` on the whole file to completion; its JSON summary."""
    args = ["--events", str(events), "-w", str(side.ws), "--batch-size", BATCH, "--json"]
    done = subprocess.run(
        [*RUN, *args], env=side.process_env(), capture_output=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return json.loads(done.stdout)


def test_a_run_killed_mid_file_then_rerun_decides_as_one_uninterrupted_run(
    history: tuple[Path, int], sides: tuple[Side, Side], tmp_path: Path
) -> None:
    events, total = history
    killed, whole = sides
    stored = _kill_mid_file(killed, events, total, tmp_path / "killed.log")
    assert 0 < stored < total, f"not killed mid-file: {stored} of {total} events stored"

    resumed = _run_whole(killed, events)
    # The committed batches are duplicates now; the killed batch left nothing behind.
    assert (resumed["read"], resumed["rejected"]) == (total, 0)
    assert (resumed["duplicates"], resumed["accepted"]) == (stored, total - stored)
    reference = _run_whole(whole, events)
    assert (reference["accepted"], reference["duplicates"]) == (total, 0)

    expected = _decisions(whole)
    assert expected, "the uninterrupted run decides nothing: the comparison would be empty"
    got = _decisions(killed)
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    assert got == expected, f"{len(missing)} missing {missing[:5]}, {len(extra)} extra {extra[:5]}"

    counts = _cli(killed, "stats")
    assert {k: counts[k] for k in COUNTED} == {k: _cli(whole, "stats")[k] for k in COUNTED}
    assert counts["events"] == total
    verified = _cli(killed, "audit", "verify")
    assert verified["ok"] and verified["first_broken"] is None
    assert verified["records"] == counts["audit_records"]

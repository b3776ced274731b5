"""Rejects you can work with (issue item 5), on SQLite and PostgreSQL: each run keeps its own
rejects, `tenure rejects list --run latest|RUN_ID` shows one run's, a run that rejects every line
exits 2 and its summary points at the rejects with their top reasons; migration 0013 upgrades a
store that already holds rejects."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from click.testing import Result
from typer.testing import CliRunner

from tenure.cli import app
from tenure.store import queries, repo
from tenure.store import schema as t
from tenure.store.db import MIGRATIONS, Store, make_engine
from tests.fixtures.hostile import workspace
from tests.helpers import line

runner = CliRunner()

# Line 2 is good once customer_id is mapped; line 3 is dated before 1970, which is only found
# once the line has a customer: the same line, a different reason after the mapping is fixed.
SALES = (
    "order,member,when,total\n"
    "o-1,c-1,2026-03-01T10:00:00Z,25.0\n"
    "o-2,c-1,1969-07-20T20:17:00Z,30.0\n"
)
MAPPING = ["--map", "event_id=order", "--map", "occurred_at=when", "--map", "payload.amount=total"]
FIXED = [*MAPPING, "--map", "customer_id=member"]


@pytest.fixture
def ws(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TENURE_DATABASE_URL", store_url)
    root = tmp_path / "ws"
    workspace(root, store_url)
    return root


def tenure(ws: Path, *args: str) -> Result:
    return runner.invoke(app, [*args, "--workspace", str(ws)])


def run_file(ws: Path, path: Path, *options: str, as_json: bool = True) -> Result:
    return tenure(ws, "run", "--events", str(path), *options, *(["--json"] if as_json else []))


def listed(ws: Path, *options: str) -> list[dict[str, Any]]:
    result = tenure(ws, "rejects", "list", "--json", *options)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def reasons(rows: list[dict[str, Any]]) -> dict[int, str]:
    return {r["line_no"]: r["field"] for r in rows}


def within_80_columns(text: str) -> bool:
    return all(len(row) <= 80 for row in text.splitlines())


def test_a_line_rejected_again_shows_its_current_reason_under_its_run(
    ws: Path, tmp_path: Path
) -> None:
    sales = tmp_path / "sales.csv"
    sales.write_text(SALES)
    first = run_file(ws, sales, *MAPPING, "--set", "type=purchase")
    assert first.exit_code == 2, first.output  # every line rejected: customer_id unmapped
    one = json.loads(first.stdout)
    assert (one["read"], one["rejected"]) == (2, 2)
    assert one["top_rejects"] == [
        {"field": "customer_id", "reason": "customer_id: field required", "count": 2}
    ]
    assert f"tenure rejects list --run {one['run_id']}" in first.stderr
    second = run_file(ws, sales, *FIXED, "--set", "type=purchase")
    assert second.exit_code == 0, second.output
    two = json.loads(second.stdout)
    assert (two["accepted"], two["rejected"]) == (1, 1)
    assert [r["field"] for r in two["top_rejects"]] == ["occurred_at"]
    assert two["rejects_command"].startswith(f"tenure rejects list --run {two['run_id']} ")

    assert reasons(listed(ws, "--run", one["run_id"])) == {2: "customer_id", 3: "customer_id"}
    assert reasons(listed(ws, "--run", two["run_id"])) == {3: "occurred_at"}
    latest = listed(ws, "--run", "latest")
    assert [(r["run_id"], r["line_no"]) for r in latest] == [(two["run_id"], 3)]
    assert listed(ws, "--run-id", one["run_id"]) == listed(ws, "--run", one["run_id"])
    # Without --run: every run's, the newest run's first, each run's in input order.
    everything = listed(ws)
    assert [(r["run_id"], r["line_no"]) for r in everything] == [
        (two["run_id"], 3),
        (one["run_id"], 2),
        (one["run_id"], 3),
    ]
    table = tenure(ws, "rejects", "list", "--run", "latest")
    assert table.exit_code == 0 and f"run {two['run_id']}" in table.stdout
    assert one["run_id"] not in table.stdout


def test_latest_run_without_rejects_says_so(ws: Path, tmp_path: Path) -> None:
    empty = tenure(ws, "rejects", "list", "--run", "latest")
    assert empty.exit_code == 0 and "no runs in this workspace yet" in empty.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(line("usage", event_id="e-1", minutes=1.0) + b"\n{oops\n")
    assert run_file(ws, bad).exit_code == 0
    good = tmp_path / "good.jsonl"
    good.write_bytes(line("usage", event_id="e-2", minutes=2.0) + b"\n")
    clean = run_file(ws, good)
    assert clean.exit_code == 0, clean.output
    summary = json.loads(clean.stdout)
    assert summary["top_rejects"] == [] and summary["rejects_command"] is None
    said = tenure(ws, "rejects", "list", "--run", "latest")
    assert said.exit_code == 0 and f"no rejects in run {summary['run_id']}" in said.stdout
    assert listed(ws, "--run", "latest") == []
    assert [r["line_no"] for r in listed(ws)] == [2]  # the earlier run's reject is still listed
    unknown = tenure(ws, "rejects", "list", "--run", "r-nope")
    assert unknown.exit_code == 1 and "no run 'r-nope'" in unknown.stderr


def test_a_run_rejecting_every_line_exits_2_and_points_at_its_rejects(
    ws: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"{oops\n" + b'{"event_id": "z", "type": "usage"}\n' + b"{oops\n")
    result = run_file(ws, bad, as_json=False)
    assert result.exit_code == 2, result.output
    assert "tenure rejects list --run r-" in result.stdout
    assert "rejects: top reasons of 3" in result.stdout and "invalid JSON" in result.stdout
    assert "all 3 lines rejected: tenure rejects list --run r-" in result.stderr
    assert within_80_columns(result.stdout) and within_80_columns(result.stderr)
    # A rerun rejects them again, under its own run.
    again = run_file(ws, bad)
    assert again.exit_code == 2 and json.loads(again.stdout)["run_id"] in again.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert run_file(ws, empty).exit_code == 0  # nothing read, nothing rejected


def test_a_partly_rejected_run_exits_0_and_shows_the_top_reasons(ws: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(
        b"\n".join(
            [
                line("usage", event_id="e-1", minutes=1.0),
                b"{oops",
                line("usage", event_id="e-2", at="2026-03-01", minutes=1.0),
                b"{oops",
                b'{"event_id": "z", "type": "usage"}',
                b"[1]",
                line("usage", event_id="e-3", at="1969-01-01T00:00:00Z"),
            ]
        )
        + b"\n"
    )
    result = run_file(ws, mixed)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["accepted"], summary["rejected"]) == (1, 6)
    top = summary["top_rejects"]
    assert len(top) == 3 and top[0]["count"] == 2 and top[0]["field"] == "line"
    assert [r["count"] for r in top] == sorted((r["count"] for r in top), reverse=True)
    assert summary["rejects_command"].startswith(f"tenure rejects list --run {summary['run_id']}")
    table = run_file(ws, mixed, as_json=False)  # all duplicates or rejects: still exit 0
    assert table.exit_code == 0, table.output
    assert "rejects: top reasons of 6" in table.stdout
    assert "tenure rejects list --run r-" in table.stdout
    assert within_80_columns(table.stdout)


def _reject(run_id: str, reason: str, raw: bytes = b"{oops") -> dict[str, Any]:
    row = {"run_id": run_id, "source": "s", "line_no": 7, "field": "line", "reason": reason}
    return {**row, "raw": raw, "raw_sha256": hashlib.sha256(raw).hexdigest()}


def test_a_retried_batch_keeps_its_rejects_once(store_url: str) -> None:
    store = Store(store_url)
    for _ in range(2):
        with store.transaction() as conn:
            repo.insert_rejects(conn, [_reject("r-1", "line: a")])
    with store.transaction() as conn:
        repo.insert_rejects(conn, [_reject("r-2", "line: b")])
    with store.reader() as conn:
        assert repo.count(conn, t.rejects) == 2
        assert [r["reason"] for r in queries.rejects(conn, run_id="r-2")] == ["line: b"]
    store.close()


def _alembic(conn: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def _stored(engine: sa.Engine) -> list[tuple[str, str]]:
    r = t.rejects.c
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.select(r.run_id, r.reason).order_by(r.id))]


def test_migration_0013_keeps_rejects_and_goes_both_ways(store_url: str) -> None:
    engine = make_engine(store_url)
    with engine.begin() as conn:
        command.upgrade(_alembic(conn), "0012")
        conn.execute(t.rejects.insert().values(_reject("r-1", "line: a")))
        conn.execute(t.rejects.insert().values(_reject("r-1", "line: c", b"other")))
    store = Store(store_url)  # migrates to the newest revision
    with store.transaction() as conn:
        repo.insert_rejects(conn, [_reject("r-2", "line: b"), _reject("r-1", "line: again")])
    with store.reader() as conn:
        assert [r["reason"] for r in queries.rejects(conn, run_id="r-2")] == ["line: b"]
    store.close()
    assert _stored(engine) == [("r-1", "line: a"), ("r-1", "line: c"), ("r-2", "line: b")]
    with engine.begin() as conn:
        command.downgrade(_alembic(conn), "0012")
    # One row per line again: the newest run's reason is the one kept.
    assert _stored(engine) == [("r-1", "line: c"), ("r-2", "line: b")]
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(t.rejects.insert().values(_reject("r-3", "line: d")))
    with engine.begin() as conn:
        command.upgrade(_alembic(conn), "head")
    with engine.connect() as conn:
        uniques = sa.inspect(conn).get_unique_constraints("rejects")
    assert [u["column_names"] for u in uniques] == [["run_id", "source", "line_no", "raw_sha256"]]
    engine.dispose()

"""Hostile lines in a real run, on SQLite and PostgreSQL (issue 13): the run completes, every bad
line is a stored reject with its line number, field and reason, and the counts add up."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tenure.cli import app
from tenure.store import queries
from tenure.store.db import Store
from tests.fixtures.hostile import (
    CUSTOM,
    HIDDEN,
    custom_line,
    deep_line,
    event,
    jline,
    nested,
    workspace,
)

runner = CliRunner()
MAX_REJECT_RAW = 4 * 1024  # what a reject keeps of its input


def run(ws: Path, url: str, lines: list[bytes], monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("TENURE_DATABASE_URL", url)
    path = ws / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = runner.invoke(app, ["run", "--events", str(path), "--workspace", str(ws), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["read"] == summary["accepted"] + summary["duplicates"] + summary["rejected"]
    return summary


def stored_rejects(url: str) -> dict[int, dict]:
    store = Store(url)
    try:
        with store.reader() as conn:
            return {r["line_no"]: r for r in queries.rejects(conn, limit=1000)}
    finally:
        store.close()


def hostile_lines() -> list[tuple[bytes, str | None]]:
    """(line, the field its reject names; None: it is a good event)."""
    return [
        (jline(event("ok-1")), None),
        (deep_line(5_000), "x"),
        (custom_line(nested(1_000)), "payload"),
        (jline(event("nul-1", customer_id="c\x00")), "customer_id"),
        (jline(event("nul-2", type=CUSTOM, payload={"note": "a\x00b"})), "payload.note"),
        (jline(event("nul-3", type=CUSTOM, payload={"k\x00": 1})), "payload"),
        (jline(event("esc", customer_id="\x1b[31mred\x1b[0m")), "customer_id"),
        (jline(event("rlo", partner_id="dealer-\u202e7")), "partner_id"),
        (jline(event("zw", source="p\u200bos")), "source"),
        (jline(event(f"nl{HIDDEN['newline']}id")), "event_id"),
        (
            jline(event("future", customer_id="c-2", occurred_at="2150-01-01T00:00:00Z")),
            "occurred_at",
        ),
        (jline(event("ancient", occurred_at="1969-07-20T20:17:00Z")), "occurred_at"),
        (custom_line(b'{"n": 123456789012345678901234567890}', "big"), "payload.n"),
        (jline(event("key", payload={"minutes": 1.0, "k" * 300: 1})), "payload." + "k" * 191),
        (jline(event("ok-2", occurred_at="2026-03-01T11:00:00Z")), None),
    ]


def test_hostile_lines_are_rejects_and_the_run_goes_on(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    workspace(ws, store_url)
    cases = hostile_lines()
    summary = run(ws, store_url, [line for line, _ in cases], monkeypatch)
    assert (summary["read"], summary["accepted"]) == (len(cases), 2)
    rejects = stored_rejects(store_url)
    expected = {i: field for i, (_, field) in enumerate(cases, start=1) if field is not None}
    assert {n: r["field"].removesuffix("…") for n, r in rejects.items()} == expected
    for r in rejects.values():
        assert r["reason"].isprintable() and "\x00" not in r["reason"]


def test_a_long_line_is_kept_as_a_prefix_with_its_digest(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    workspace(ws, store_url)
    long = b"x" * (3 * 1024 * 1024)
    summary = run(ws, store_url, [long, jline(event("after"))], monkeypatch)
    assert (summary["read"], summary["accepted"], summary["rejected"]) == (2, 1, 1)
    r = stored_rejects(store_url)[1]
    assert len(r["raw"]) == MAX_REJECT_RAW
    assert hashlib.sha256(long).hexdigest() in r["reason"] and str(len(long)) in r["reason"]


def test_every_rejects_input_length_and_sha256_are_columns(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # NEEDS the pipeline to pass them on: `_reject_row` in runtime/pipeline.py must add
    # "input_size": r.size and "input_sha256": r.sha256 (the parser already sets both).
    ws = tmp_path / "ws"
    workspace(ws, store_url)
    lines = [b"y" * (200 * 1024), b'{"event_id": "z"}', jline(event("after"))]
    summary = run(ws, store_url, lines, monkeypatch)
    assert (summary["accepted"], summary["rejected"]) == (1, 2)
    listed = runner.invoke(app, ["rejects", "list", "-w", str(ws), "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {r["line_no"]: r for r in json.loads(listed.stdout)}
    for n, raw in enumerate(lines[:2], start=1):
        assert rows[n]["input_size"] == len(raw), n
        assert rows[n]["input_sha256"] == hashlib.sha256(raw).hexdigest(), n
    assert len(rows[1]["raw"]) == MAX_REJECT_RAW
    table = runner.invoke(app, ["rejects", "list", "-w", str(ws)], terminal_width=250)
    assert f"{200 * 1024:,}" in table.stdout
    assert hashlib.sha256(lines[0]).hexdigest()[:12] in table.stdout


def test_the_skew_comes_from_the_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = tmp_path / "ws"
    url = f"sqlite:///{ws / 'tenure.db'}"
    workspace(ws, url, max_future_skew="2h")
    # After a day of history up to the clock: 1 hour ahead passes, 3 hours past that do not.
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    lines = [
        jline(event(f"in-{h}h", occurred_at=(now + dt.timedelta(hours=h)).isoformat()))
        for h in (-24, 1, 4)
    ]
    summary = run(ws, url, lines, monkeypatch)
    assert (summary["accepted"], summary["rejected"]) == (2, 1)
    assert "2h ahead" in stored_rejects(url)[3]["reason"]


def test_a_files_first_event_is_held_to_what_the_store_saw_and_to_the_clock(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    workspace(ws, store_url)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def at(hours: int, name: str) -> bytes:
        return jline(event(name, occurred_at=(now + dt.timedelta(hours=hours)).isoformat()))

    # A history running a little ahead of the clock, in steps of under a day (the skew).
    assert run(ws, store_url, [at(20, "a"), at(40, "b")], monkeypatch)["accepted"] == 2
    # The next file's first event is held to the stored newest event (40 h), not let through.
    second = run(ws, store_url, [at(66, "too-far"), at(63, "next")], monkeypatch)
    assert (second["accepted"], second["rejected"]) == (1, 1)
    assert "ahead of the newest event so far" in stored_rejects(store_url)[1]["reason"]
    far = jline(event("far", occurred_at="2150-01-01T00:00:00Z"))
    third = run(ws, store_url, [far, at(64, "after")], monkeypatch)
    assert (third["accepted"], third["rejected"]) == (1, 1)

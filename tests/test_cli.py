"""The command line as a user meets it: exit codes, one-line errors, summaries, JSON."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from tenure.cli import app

runner = CliRunner()


def tenure(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def history(tmp_path: Path) -> Path:
    path = tmp_path / "h.jsonl"
    code, _, _ = tenure(
        "generate", "--customers", "60", "--days", "45", "--seed", "4", "--out", str(path)
    )
    assert code == 0
    return path


def test_generate_is_deterministic(tmp_path: Path, history: Path) -> None:
    again = tmp_path / "again.jsonl"
    tenure("generate", "--customers", "60", "--days", "45", "--seed", "4", "--out", str(again))
    assert again.read_bytes() == history.read_bytes()
    other = tmp_path / "other.jsonl"
    tenure("generate", "--customers", "60", "--days", "45", "--seed", "5", "--out", str(other))
    assert other.read_bytes() != history.read_bytes()


def test_run_prints_the_summary_and_stats_match(tmp_path: Path, history: Path) -> None:
    ws = str(tmp_path / "ws")
    code, out, _ = tenure("run", "--events", str(history), "--workspace", ws, "--json")
    assert code == 0
    summary = json.loads(out)
    n = len(history.read_bytes().splitlines())
    assert summary["read"] == summary["accepted"] == n
    code, out, _ = tenure("stats", "--json", "--workspace", ws)
    stats = json.loads(out)
    assert stats["events"] == n and stats["decisions"] == sum(summary["decisions"].values())
    # The outbox holds a journey start per action, and the signals of the history's later events
    # the journeys listen for: a customer is decided at the close of a day, so what they did
    # after it, further on in the same file, reaches the journey that decision started.
    db = sqlite3.connect(Path(ws) / "tenure.db")
    rows = db.execute(
        "SELECT o.kind, o.created_at > d.decided_at, d.status FROM outbox o "
        "JOIN decisions d ON d.decision_id = o.decision_id"
    ).fetchall()
    db.close()
    kinds = Counter(kind for kind, _, _ in rows)
    assert kinds["journey.start"] == summary["decisions"].get("action", 0) > 0
    assert set(kinds) <= {"journey.start", "journey.signal"}
    assert all(
        after and status == "action" for kind, after, status in rows if kind != "journey.start"
    )
    assert stats["outbox"] == len(rows) == kinds["journey.start"] + kinds["journey.signal"]
    code, out, _ = tenure("run", "--events", str(history), "--workspace", ws)
    assert code == 0 and "duplicate" in out and f"{n:,}" in out


def test_missing_or_unusable_input_fails_with_one_line(tmp_path: Path) -> None:
    code, _, err = tenure("run", "--events", str(tmp_path / "nope.jsonl"), "-w", str(tmp_path))
    assert code == 2 and "events file not found" in err and len(err.strip().splitlines()) == 1
    code, _, err = tenure("run", "--events", str(tmp_path), "-w", str(tmp_path / "ws"))
    assert code == 2 and "is a directory" in err
    events = tmp_path / "e.jsonl"
    events.write_bytes(b"")
    code, _, err = tenure(
        "run",
        "--events",
        str(events),
        "--policy",
        str(tmp_path / "p.yaml"),
        "-w",
        str(tmp_path / "ws"),
    )
    assert code == 2 and "policy file not found" in err
    bad_policy = tmp_path / "bad.yaml"
    bad_policy.write_text("id: p\ntrigger: {risk_at_least: 3}\nactions: []\n")
    code, _, err = tenure(
        "run", "--events", str(events), "--policy", str(bad_policy), "-w", str(tmp_path / "ws")
    )
    assert code == 2 and "trigger.risk_at_least" in err and "actions" in err


def test_rejected_lines_still_exit_zero_and_are_listed(tmp_path: Path, history: Path) -> None:
    mixed = tmp_path / "mixed.jsonl"
    lines = history.read_bytes().splitlines()[:50]
    lines.insert(10, b'{"event_id": "z", "type": "usage"}')
    mixed.write_bytes(b"\n".join(lines) + b"\n")
    ws = str(tmp_path / "ws")
    code, out, _ = tenure("run", "--events", str(mixed), "-w", ws, "--json")
    assert code == 0 and json.loads(out)["rejected"] == 1
    code, out, _ = tenure("rejects", "list", "--json", "-w", ws)
    [reject] = json.loads(out)
    assert reject["line_no"] == 11 and reject["field"] == "customer_id"


def test_csv_input_with_column_mapping(tmp_path: Path) -> None:
    csv = tmp_path / "sales.csv"
    csv.write_text(
        "order,member,when,total\n"
        "o-1,c-1,2026-03-01T10:00:00Z,25.0\n"
        "o-2,c-1,2026-03-02T10:00:00Z,abc\n"
    )
    ws = str(tmp_path / "ws")
    code, out, err = tenure(
        "run",
        "--events",
        str(csv),
        "-w",
        ws,
        "--json",
        "--map",
        "event_id=order",
        "--map",
        "customer_id=member",
        "--map",
        "occurred_at=when",
        "--map",
        "payload.amount=total",
        "--set",
        "type=purchase",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["accepted"], summary["rejected"]) == (1, 1)
    code, out, _ = tenure("customers", "show", "c-1", "--json", "-w", ws)
    assert json.loads(out)["features"]["spend_total"] == 25.0


def test_audit_verify_names_a_tampered_record(tmp_path: Path, history: Path) -> None:
    ws = tmp_path / "ws"
    policy = tmp_path / "eager.yaml"
    policy.write_text(
        "id: eager\ntrigger: {risk_at_least: 0.05}\nactions:\n"
        "  - {id: email, channel: email, cost: 0.1, uplift: 0.05}\n"
    )
    tenure("run", "--events", str(history), "-w", str(ws), "--policy", str(policy))
    code, out, _ = tenure("audit", "verify", "-w", str(ws), "--json")
    result = json.loads(out)
    assert code == 0 and result["ok"] and result["records"] >= 3
    db = sqlite3.connect(ws / "tenure.db")
    db.execute(
        'UPDATE audit SET body = replace(body, \'"status":"\', \'"status":"x\') WHERE seq = 3'
    )
    db.commit()
    db.close()
    code, _, err = tenure("audit", "verify", "-w", str(ws))
    assert code == 1 and "record 3" in err and "altered" in err


def test_decisions_customers_and_replay(tmp_path: Path, history: Path) -> None:
    ws = str(tmp_path / "ws")
    policy = tmp_path / "eager.yaml"
    policy.write_text(
        "id: eager\ntrigger: {risk_at_least: 0.05}\nactions:\n"
        "  - {id: email, channel: email, cost: 0.1, uplift: 0.05}\n"
    )
    tenure("run", "--events", str(history), "-w", ws, "--policy", str(policy))
    code, out, _ = tenure("decisions", "list", "--limit", "5", "--json", "-w", ws)
    rows = json.loads(out)
    assert code == 0 and 0 < len(rows) <= 5
    first = rows[0]
    code, out, _ = tenure(
        "decisions", "list", "--customer", first["customer_id"], "--json", "-w", ws
    )
    assert {r["customer_id"] for r in json.loads(out)} == {first["customer_id"]}
    code, out, _ = tenure("customers", "show", first["customer_id"], "--json", "-w", ws)
    shown = json.loads(out)
    assert code == 0 and 0 <= shown["score"]["risk"] <= 1 and shown["decisions"]
    code, out, _ = tenure("audit", "replay", first["decision_id"], "-w", ws)
    assert code == 0 and "identical" in out
    code, _, err = tenure("customers", "show", "c-nobody", "-w", ws)
    assert code == 1 and "no customer" in err


def test_events_schema_is_json_schema() -> None:
    code, out, _ = tenure("events", "schema")
    schema = json.loads(out)
    assert code == 0 and schema["$schema"].endswith("2020-12/schema")


def test_demo_runs_end_to_end_with_its_journeys(tmp_path: Path) -> None:
    ws = str(tmp_path / "ws")
    code, out, _ = tenure("demo", "--customers", "300", "--days", "60", "-w", ws)
    assert code == 0
    assert "read" in out and "accepted" in out and "where to look next" in out
    assert "journeys (Temporal, time-skipping)" in out and "outcome: expired" in out
    code, listed, _ = tenure("journeys", "list", "--limit", "1000", "--json", "-w", ws)
    journeys = json.loads(listed)
    assert journeys and {j["status"] for j in journeys} == {"completed"}
    assert {j["outcome"] for j in journeys} <= {"sent", "expired", "redeemed", "churned"}
    offers = (tmp_path / "ws" / "outbox" / "sms.jsonl").read_bytes().splitlines()
    keys = [json.loads(x)["idempotency_key"] for x in offers]
    assert len(keys) == len(set(keys)) > 0


def test_empty_input_is_fine(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    code, out, _ = tenure("run", "--events", str(empty), "-w", str(tmp_path / "ws"), "--json")
    assert code == 0 and json.loads(out)["read"] == 0


def test_standard_input(tmp_path: Path, history: Path) -> None:
    data = history.read_bytes()
    result = runner.invoke(
        app, ["run", "--events", "-", "-w", str(tmp_path / "ws"), "--json"], input=data
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout)["accepted"] == len(data.splitlines())


def test_lift_report(tmp_path: Path, history: Path) -> None:
    ws = str(tmp_path / "ws")
    config = tmp_path / "ws" / "tenure.yaml"
    config.parent.mkdir()
    config.write_text("guardrails:\n  control_share: 0.3\n")
    policy = tmp_path / "eager.yaml"
    policy.write_text(
        "id: eager\ntrigger: {risk_at_least: 0.05}\nactions:\n"
        "  - {id: email, channel: email, cost: 0.1, uplift: 0.05}\n"
    )
    tenure("run", "--events", str(history), "-w", ws, "--policy", str(policy))
    code, out, _ = tenure("report", "lift", "--json", "-w", ws, "--window", "7")
    report = json.loads(out)
    assert code == 0 and report["rows"]
    row = report["rows"][0]
    assert row["action_id"] == "email" and row["control"]["customers"] > 0
    assert row["treated"]["customers"] > 0


def test_version_flag_prints_the_installed_version() -> None:
    from typer.testing import CliRunner

    from tenure import __version__
    from tenure.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"tenure {__version__}"


def test_one_error_boundary_prints_one_line_and_keeps_markup_literal(tmp_path) -> None:
    from typer.testing import CliRunner

    from tenure.cli import app

    missing = tmp_path / "[red]none[/red].jsonl"  # raised deep inside `run`, caught once
    result = CliRunner().invoke(app, ["run", "--events", str(missing), "-w", str(tmp_path)])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: events file not found")
    assert "[red]none[/red].jsonl" in lines[0]
    assert "Traceback" not in result.output


def test_data_reaches_the_terminal_as_text_never_as_control_or_markup() -> None:
    from tenure.cli.shell import plain

    hostile = "c-1\x1b[2J[bold red]boom[/]\u202eevil\u200b\n"
    shown = plain(hostile)
    assert "\x1b" not in shown and "\u202e" not in shown and "\u200b" not in shown
    assert "\n" not in shown
    assert "\\u001b" in shown and "\\u202e" in shown
    assert "\\[bold red]" in shown  # Rich prints the brackets, it does not style
    assert plain("two\nlines", lines=True) == "two\nlines"
    assert plain("café [x]") == "café \\[x]"


def _commands(command: Any, path: str = "tenure") -> Iterator[tuple[str, Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, f"{path} {name}")


def test_every_help_paragraph_is_wrapped_by_the_terminal_not_by_the_source() -> None:
    """Help paragraphs reach the terminal as one line each (a docstring's source line breaks
    printed ragged at 80 columns), and `tenure run --help` reads as whole sentences."""
    root = typer.main.get_command(app)
    helps = {path: cmd.help for path, cmd in _commands(root) if cmd.help}
    assert len(helps) > 50
    ragged = {p: h for p, h in helps.items() if any("\n" in x for x in h.split("\n\n"))}
    assert ragged == {}
    result = CliRunner().invoke(app, ["run", "--help"], terminal_width=80)
    text = " ".join(result.stdout.split())
    assert "the summary shows the top reasons and the command that lists them all" in text
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    """`tenure ... | head`: once the reader has closed the pipe, no error line and no trace."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tenure", "events", "schema"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before it writes: its first write meets a closed pipe
    err = proc.stderr.read()
    assert proc.wait(60) == 1
    assert err == b""

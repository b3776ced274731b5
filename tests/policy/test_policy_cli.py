"""`tenure policy validate|test|diff` as a policy author uses them."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import yaml
from typer.testing import CliRunner

from tenure.cli import app
from tenure.events.parse import LineParser, RawLine
from tenure.policy.model import default_policy, parse_policy
from tenure.runtime.pipeline import Pipeline
from tenure.sim.population import PopulationSpec, generate
from tenure.store.db import Store

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_the_example_cases_pass() -> None:
    result = runner.invoke(
        app,
        [
            "policy",
            "test",
            str(ROOT / "examples" / "policy.yaml"),
            "--cases",
            str(ROOT / "examples" / "policy-cases.yaml"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stdout
    results = json.loads(result.stdout)
    assert len(results) == 9 and all(r["passed"] for r in results)


def test_a_failing_case_fails_the_command(tmp_path: Path) -> None:
    cases = tmp_path / "c.yaml"
    cases.write_text(
        yaml.safe_dump(
            {
                "cases": [
                    {
                        "name": "wrong",
                        "risk": 0.9,
                        "value": 600,
                        "consent": {"email:marketing": True},
                        "expect": {"status": "action", "action_id": "retention-push"},
                    }
                ]
            }
        )
    )
    result = runner.invoke(
        app, ["policy", "test", str(ROOT / "examples" / "policy.yaml"), "--cases", str(cases)]
    )
    assert (
        result.exit_code == 1 and "FAIL" in result.stdout and "0 passed, 1 failed" in result.stdout
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("cases: [{name: x, expect: {status: maybe}}]\n")
    result = runner.invoke(
        app, ["policy", "test", str(ROOT / "examples" / "policy.yaml"), "--cases", str(bad)]
    )
    assert result.exit_code == 2 and "cases.0.expect.status" in result.stderr


def test_validate_names_the_version_and_the_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["policy", "validate", str(ROOT / "examples" / "policy.yaml")])
    assert result.exit_code == 0 and default_policy().content_hash[:12] in result.stdout
    broken = tmp_path / "p.yaml"
    broken.write_text("id: p\ntrigger: {risk_at_least: 0.5}\nactions: [{id: a}]\n")
    result = runner.invoke(app, ["policy", "validate", str(broken)])
    assert result.exit_code == 2 and "actions.0.channel" in result.stderr


def test_diff_of_two_thresholds_lists_exactly_the_customers_between_them(tmp_path: Path) -> None:
    lines = [orjson.dumps(e) for e in generate(PopulationSpec(customers=150, days=50, seed=4))]
    history = tmp_path / "h.jsonl"
    history.write_bytes(b"\n".join(lines) + b"\n")
    data = default_policy().model_dump(mode="json")

    def policy_file(name: str, threshold: float) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            yaml.safe_dump(
                {**data, "id": "p", "trigger": {"risk_at_least": threshold, "on_events": []}}
            )
        )
        return path

    # One batch: every customer is evaluated exactly once, so a decision happens iff risk >= t.
    # First the risk each customer has at that evaluation, from a policy deciding for everyone.
    store = Store(f"sqlite:///{tmp_path / 'all.db'}")
    parser = LineParser()
    everyone = parse_policy(yaml.safe_load(policy_file("all", 0.0).read_text()))
    Pipeline(store, everyone, batch_size=1_000_000).run(
        (parser.parse(RawLine(i, raw)) for i, raw in enumerate(lines, 1)), "all"
    )
    with store.reader() as conn:
        risks = dict(conn.exec_driver_sql("SELECT customer_id, risk FROM decisions").fetchall())
    ordered = sorted(set(risks.values()))
    low = (ordered[len(ordered) // 2] + ordered[len(ordered) // 2 + 1]) / 2
    high = (ordered[len(ordered) * 4 // 5] + ordered[len(ordered) * 4 // 5 + 1]) / 2
    result = runner.invoke(
        app,
        [
            "policy",
            "diff",
            str(policy_file("low", low)),
            str(policy_file("high", high)),
            "--events",
            str(history),
            "--batch-size",
            "1000000",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    differing = {row["customer_id"] for row in json.loads(result.stdout)["differing"]}
    between = {cid for cid, risk in risks.items() if low <= risk < high}
    assert len(between) > 10 and differing == between

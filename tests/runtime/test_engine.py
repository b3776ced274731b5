"""The composition root: every path decides with the same workspace and what it has learned."""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import yaml
from typer.testing import CliRunner

from tenure.api.service import Service
from tenure.cli import app
from tenure.config import resolve
from tenure.journeys.library import BUILTIN
from tenure.policy.model import default_policy
from tenure.runtime.engine import Engine, learned
from tenure.sim.population import PopulationSpec, generate
from tenure.store.db import Store
from tenure.workspace import Workspace

runner = CliRunner()
SRC = Path(__file__).resolve().parents[2] / "src" / "tenure"


def eager_policy(journey: str | None = None) -> dict[str, object]:
    """The built-in policy, triggered by almost anyone, its costliest action on `journey`."""
    policy = default_policy().model_dump(mode="json")
    policy["id"] = "eager"
    policy["trigger"] = {"risk_at_least": 0.05, "on_events": ["payment.failed", "support.ticket"]}
    if journey is not None:
        policy["actions"][-1]["journey"] = journey
    return policy


def history(path: Path, customers: int, days: int, seed: int) -> Path:
    spec = PopulationSpec(customers=customers, days=days, seed=seed)
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in generate(spec)) + b"\n")
    return path


def test_policy_diff_knows_the_workspace_journeys_that_run_knows(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "journeys").mkdir(parents=True)
    spec = yaml.safe_load((BUILTIN / "offer-reminder-expiry.yaml").read_text())
    (ws / "journeys" / "custom.yaml").write_text(yaml.safe_dump({**spec, "id": "custom"}))
    policy = tmp_path / "p.yaml"
    policy.write_text(yaml.safe_dump(eager_policy(journey="custom")))
    events = history(tmp_path / "ev.jsonl", customers=40, days=40, seed=5)
    ran = runner.invoke(
        app, ["run", "--events", str(events), "--policy", str(policy), "-w", str(ws), "--json"]
    )
    assert ran.exit_code == 0, ran.output
    args = ["policy", "diff", str(policy), str(policy), "--events", str(events)]
    diffed = runner.invoke(app, [*args, "-w", str(ws), "--json"])
    assert diffed.exit_code == 0, diffed.output
    result = json.loads(diffed.stdout)
    assert result["differing"] == []
    assert sum(result["new"]["decisions"].values()) > 0


def test_the_api_decides_with_the_evidence_run_learned(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "tenure.yaml").write_text("guardrails:\n  control_share: 0.4\n")
    policy = {**eager_policy(), "guardrails": {"cooldown_days": 1}}
    events = history(tmp_path / "h.jsonl", customers=300, days=100, seed=2)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(policy))
    args = ["run", "--events", str(events), "--policy", str(path), "-w", str(ws)]
    ran = runner.invoke(app, [*args, "--json", "--batch-size", "3000"])
    assert ran.exit_code == 0, ran.output
    settings = resolve(ws)
    store = Store(settings.database_url)
    known = learned(store)
    expected = known.evidence
    assert expected, "the run should have learned from its own outcomes"
    assert known.observed is not None
    service = Service(settings)
    assert dict(service.pipeline.history.evidence_at(known.observed)) == dict(expected)
    by_cli = Engine(Workspace.load(settings), store).pipeline()
    assert dict(by_cli.history.evidence_at(known.observed)) == dict(expected)
    assert by_cli.journeys.specs.keys() == service.pipeline.journeys.specs.keys()
    service.store.close()
    store.close()


def test_one_place_builds_a_pipeline() -> None:
    builders = sorted(
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if re.search(r"(?<![\w.])Pipeline\(", p.read_text(encoding="utf-8"))
    )
    assert builders == ["runtime/engine.py"]

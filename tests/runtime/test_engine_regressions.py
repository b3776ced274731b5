"""Regressions from a review of the decide layer: each was a real bug once."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from tenure.cli import app
from tenure.events.parse import LineParser, RawLine
from tenure.policy.decide import DecisionMemory, TriggerContext, decide
from tenure.policy.guardrails import GuardrailSettings
from tenure.policy.inputs import DecisionInputs
from tenure.policy.lifecycle import PolicySet, in_canary
from tenure.policy.model import default_policy, parse_policy
from tenure.runtime.pipeline import Pipeline
from tenure.scoring.types import Score
from tenure.sim.population import PopulationSpec, generate
from tenure.store import repo
from tenure.store import schema as t
from tenure.store.db import Store
from tests.fixtures.policy import NOW, features
from tests.fixtures.population import EAGER, population_lines

runner = CliRunner()


def live_decisions(store: Store) -> list[tuple[str, str, str]]:
    d = t.decisions.c
    with store.reader() as conn:
        return sorted(
            conn.execute(
                select(d.customer_id, d.trigger_event_id, d.status).where(d.mode != "shadow")
            ).all()
        )


def test_a_shadow_with_the_same_id_leaves_live_decisions_alone(tmp_path: Path) -> None:
    lines = population_lines(customers=60, days=60)
    shadow = parse_policy(
        {**EAGER.model_dump(mode="json"), "trigger": {"risk_at_least": 0.9, "on_events": []}}
    )
    alone, with_shadow = (
        Store(f"sqlite:///{tmp_path / 'a.db'}"),
        Store(f"sqlite:///{tmp_path / 'b.db'}"),
    )
    for store, policies in (
        (alone, PolicySet(EAGER)),
        (with_shadow, PolicySet(EAGER, None, 0, (shadow,))),
    ):
        parser_lines = lines

        parser = LineParser()
        Pipeline(store, policies, batch_size=400).run(
            (parser.parse(RawLine(i, raw)) for i, raw in enumerate(parser_lines, 1)), "x"
        )
    assert live_decisions(alone) == live_decisions(with_shadow)


def test_an_escalation_respects_the_control_group() -> None:
    data = default_policy().model_dump(mode="json")
    data["escalations"] = [{"when": "true", "queue": "desk"}]
    policy = parse_policy(data)
    guards = GuardrailSettings(control_share=0.5, control_salt="s")
    outcomes = []
    for i in range(200):
        f = features("email")
        f = type(f)(**{**{k: getattr(f, k) for k in f.__struct_fields__}, "customer_id": f"c{i}"})
        out = decide(
            DecisionInputs(
                f,
                Score("t", "1", 0.9, 600, ()),
                DecisionMemory(),
                TriggerContext(f"e{i}", "usage", frozenset({"usage"})),
                NOW,
                guards,
            ),
            policy,
        )
        outcomes.append(out.decision)
    statuses = {(d.status, d.guardrail) for d in outcomes}
    assert statuses == {("human", None), ("suppressed", "control_group")}


def test_an_ab_canary_still_splits_its_customers() -> None:
    data = default_policy().model_dump(mode="json")
    data["selection"] = {
        "mode": "ab",
        "weights": {"winback-email": 1, "retention-push": 1, "retention-sms-offer": 0},
    }
    canary = parse_policy(data)
    arms = set()
    for i in range(400):
        cid = f"c-{i}"
        if not in_canary(cid, canary, 20):
            continue
        f = features("email", "push")
        f = type(f)(**{**{k: getattr(f, k) for k in f.__struct_fields__}, "customer_id": cid})
        d = decide(
            DecisionInputs(
                f,
                Score("t", "1", 0.9, 600, ()),
                DecisionMemory(),
                TriggerContext(f"e{i}", "usage", frozenset({"usage"})),
                NOW,
                GuardrailSettings(control_share=0.0),
            ),
            canary,
        ).decision
        arms.add(d.arm)
    assert arms == {"winback-email", "retention-push"}


def test_thompson_ties_do_not_report_zero_propensity() -> None:
    data = default_policy().model_dump(mode="json")
    data["selection"] = {"mode": "thompson"}
    data["actions"] = [
        {"id": "a", "channel": "email", "cost": 1, "uplift": 0.1},
        {"id": "b", "channel": "email", "cost": 1, "uplift": 0.1},
    ]
    d = decide(
        DecisionInputs(
            features("email"),
            Score("t", "1", 0.9, 600, ()),
            DecisionMemory(),
            TriggerContext("e", "usage", frozenset({"usage"})),
            NOW,
            GuardrailSettings(control_share=0.0),
        ),
        parse_policy(data),
    ).decision
    assert d.status == "action" and d.propensity > 0


def test_the_running_engine_learns_uplift_from_its_own_outcomes(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "tenure.yaml").write_text("guardrails:\n  control_share: 0.4\n")
    policy = tmp_path / "p.yaml"
    policy.write_text(
        yaml.safe_dump({**EAGER.model_dump(mode="json"), "guardrails": {"cooldown_days": 1}})
    )
    lines = [orjson.dumps(e) for e in generate(PopulationSpec(customers=500, days=120, seed=2))]
    cut = len(lines) * 3 // 4
    for part in (lines[:cut], lines[cut:]):
        history = tmp_path / "h.jsonl"
        history.write_bytes(b"\n".join(part) + b"\n")
        result = runner.invoke(
            app,
            [
                "run",
                "--events",
                str(history),
                "-w",
                str(ws),
                "--policy",
                str(policy),
                "--batch-size",
                "5000",
                "--json",
            ],
        )
        assert result.exit_code == 0, result.stderr
    store = Store(f"sqlite:///{ws / 'tenure.db'}")
    with store.reader() as conn:
        records = [r["record"] for r in repo.rows(conn, select(t.decisions.c.record))]
    sources = {c["uplift_source"] for r in records for c in r["candidates"]}
    assert "posterior" in sources
    store.close()
    replay = runner.invoke(app, ["decisions", "list", "--json", "-w", str(ws), "--limit", "3"])
    assert json.loads(replay.stdout)

"""Policy lifecycle: approvals, canary shares, shadows with no effect, rollback, all audited."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from tenure.cli import app
from tenure.errors import ConfigError
from tenure.policy.lifecycle import PolicySet, in_canary, plan_transition
from tenure.policy.model import default_policy, parse_policy
from tenure.sim.population import PopulationSpec, generate
from tenure.store import schema as t
from tenure.store.db import Store

runner = CliRunner()
BASE = default_policy()
V2 = parse_policy(
    {
        **BASE.model_dump(mode="json"),
        "id": "retention-v2",
        "trigger": {"risk_at_least": 0.4, "on_events": []},
    }
)


def test_approval_needs_a_second_person() -> None:
    with pytest.raises(ConfigError, match="someone else must approve"):
        plan_transition("h", "p", "ana", "draft", "active", "ana", None, {})
    with pytest.raises(ConfigError, match="someone else must approve it going canary"):
        plan_transition("h", "p", "ana", "shadow", "canary", "ana", 99.9, {})
    with pytest.raises(ConfigError, match="take it out of service"):
        plan_transition("h", "p", "ana", "active", "retired", "ana", None, {})
    assert (
        plan_transition("h", "p", "ana", "draft", "shadow", "ana", None, {}).to_status == "shadow"
    )
    plan = plan_transition(
        "h",
        "p",
        "ana",
        "draft",
        "active",
        "ben",
        None,
        {"old": ("p", "active"), "c": ("p", "canary"), "s": ("q", "shadow")},
    )
    assert plan.retired == ("c", "old")
    with pytest.raises(ConfigError, match="--percent"):
        plan_transition("h", "p", "ana", "draft", "canary", "ana", None, {})
    with pytest.raises(ConfigError, match="--percent only"):
        plan_transition("h", "p", "ana", "draft", "shadow", "ana", 10, {})


def test_canary_share_is_stable_and_close_to_the_setting() -> None:
    members = [in_canary(f"c-{i}", V2, 20) for i in range(20_000)]
    assert 0.19 < sum(members) / len(members) < 0.21
    assert members == [in_canary(f"c-{i}", V2, 20) for i in range(20_000)]
    policies = PolicySet(BASE, V2, 20)
    assert {policies.live_for(f"c-{i}").id for i in range(200)} == {BASE.id, V2.id}


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_shadow_and_canary_end_to_end(tmp_path: Path) -> None:
    ws = str(tmp_path / "ws")
    files = {}
    for name, policy in (("v1", BASE), ("v2", V2)):
        files[name] = tmp_path / f"{name}.yaml"
        files[name].write_text(yaml.safe_dump(policy.model_dump(mode="json")))
        assert invoke("policy", "add", str(files[name]), "--by", "ana", "-w", ws)[0] == 0
    v1, v2 = BASE.content_hash[:10], V2.content_hash[:10]
    code, _, err = invoke("policy", "promote", v1, "--to", "active", "--by", "ana", "-w", ws)
    assert code == 2 and "someone else must approve" in err
    assert invoke("policy", "promote", v1, "--to", "active", "--by", "ben", "-w", ws)[0] == 0
    assert invoke("policy", "promote", v2, "--to", "shadow", "--by", "ana", "-w", ws)[0] == 0

    history = tmp_path / "h.jsonl"
    lines = [orjson.dumps(e) for e in generate(PopulationSpec(customers=300, days=60, seed=8))]
    half = len(lines) // 2
    history.write_bytes(b"\n".join(lines[:half]) + b"\n")
    code, out, _ = invoke(
        "run", "--events", str(history), "-w", ws, "--batch-size", "3000", "--json"
    )
    summary = json.loads(out)
    assert code == 0 and summary["shadow"] and summary["decisions"]
    store = Store(f"sqlite:///{tmp_path / 'ws' / 'tenure.db'}")
    d, o = t.decisions.c, t.outbox.c
    with store.reader() as conn:
        shadow_ids = set(conn.execute(select(d.decision_id).where(d.mode == "shadow")).scalars())
        outbox = set(conn.execute(select(o.decision_id)).scalars())
        hashes = set(conn.execute(select(d.policy_hash).where(d.mode == "shadow")).scalars())
    assert shadow_ids and not shadow_ids & outbox and hashes == {V2.content_hash}
    code, out, _ = invoke("audit", "replay", sorted(shadow_ids)[0], "-w", ws)
    assert code == 0 and "identical" in out

    assert (
        invoke(
            "policy", "promote", v2, "--to", "canary", "--percent", "30", "--by", "ben", "-w", ws
        )[0]
        == 0
    )
    history.write_bytes(b"\n".join(lines[half:]) + b"\n")
    code, out, _ = invoke(
        "run", "--events", str(history), "-w", ws, "--batch-size", "3000", "--json"
    )
    assert code == 0
    with store.reader() as conn:
        canary = conn.execute(select(d.customer_id).where(d.mode == "canary")).scalars().all()
    assert canary and all(in_canary(c, V2, 30) for c in canary)

    # Rollback: v2 goes live, then v1 again; each change is an audit record.
    assert invoke("policy", "promote", v2, "--to", "active", "--by", "ben", "-w", ws)[0] == 0
    assert invoke("policy", "promote", v1, "--to", "active", "--by", "cy", "-w", ws)[0] == 0
    code, out, _ = invoke("policy", "list", "--json", "-w", ws)
    status = {r["policy_hash"][:10]: r["status"] for r in json.loads(out)}
    assert status == {v1: "active", v2: "retired"}
    with store.reader() as conn:
        moves = (
            conn.execute(select(t.audit.c.body).where(t.audit.c.kind == "policy.transition"))
            .scalars()
            .all()
        )
    assert len(moves) == 5
    assert invoke("audit", "verify", "-w", ws)[0] == 0
    store.close()

"""Tiers: up at once, down after a grace period one level at a time, each change audited."""

from __future__ import annotations

import datetime as dt
import json

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from tenure.cli import app
from tenure.loyalty.tiers import BASE, Standing, Tiers, evaluate
from tests.fixtures.loyalty import CONTRACT

TIERS = Tiers(
    metric="points_rolling",
    window_days=30,
    levels=[{"name": "silver", "threshold": 100}, {"name": "gold", "threshold": 500}],
    grace_days=10,
)
T = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def test_up_at_once_down_after_grace_one_step_at_a_time():
    s, change = evaluate(TIERS, Standing(), 600, T)
    assert s.tier == "gold" and change.after == "gold" and "600 reaches gold" in change.reason
    s, change = evaluate(TIERS, s, 0, T + dt.timedelta(days=1))
    assert (s.tier, change) == ("gold", None) and s.below_since == T + dt.timedelta(days=1)
    s, change = evaluate(TIERS, s, 0, T + dt.timedelta(days=5))
    assert (s.tier, change) == ("gold", None)  # still in grace
    s, change = evaluate(TIERS, s, 0, T + dt.timedelta(days=11))
    assert s.tier == "silver" and change.before == "gold" and "10-day grace period" in change.reason
    s, change = evaluate(TIERS, s, 0, T + dt.timedelta(days=15))
    assert (s.tier, change) == ("silver", None)  # a new grace period for the next step
    s, change = evaluate(TIERS, s, 0, T + dt.timedelta(days=21))
    assert s.tier == BASE
    # Back above the level during grace: the grace period is forgotten.
    s, _ = evaluate(TIERS, Standing("silver", T), 150, T + dt.timedelta(days=3))
    assert s == Standing("silver")


def test_levels_must_ascend():
    with pytest.raises(ValueError, match="lowest threshold up"):
        Tiers(levels=[{"name": "gold", "threshold": 500}, {"name": "silver", "threshold": 100}])


def test_tiers_follow_activity_and_the_scheduled_run_with_audit(tmp_path):
    ws = tmp_path / "ws"
    (ws / "contracts").mkdir(parents=True)
    (ws / "contracts" / "acme.yaml").write_text(yaml.safe_dump(CONTRACT))
    (ws / "tenure.yaml").write_text(
        yaml.safe_dump({"programmes": {"default": {"tiers": TIERS.model_dump(mode="json")}}})
    )
    line = {
        "event_id": "big",
        "type": "purchase",
        "customer_id": "ann",
        "partner_id": "dealer-1",
        "occurred_at": "2026-03-02T10:00:00Z",
        "payload": {"amount": 600.0, "product_line": "parts"},
    }
    history = tmp_path / "h.jsonl"
    history.write_bytes(orjson.dumps(line) + b"\n")
    runner = CliRunner()
    assert runner.invoke(app, ["run", "--events", str(history), "-w", str(ws)]).exit_code == 0
    # 600 points on 2 March: gold at once. A month and more later the window is empty; the
    # scheduled run starts the grace period, then takes ann down one level.
    runs = []
    for day in ("2026-04-10", "2026-04-21"):
        result = runner.invoke(
            app, ["tiers", "recalc", "--as-of", f"{day}T00:00:00Z", "--json", "-w", str(ws)]
        )
        assert result.exit_code == 0, result.output
        runs.append(json.loads(result.stdout))
    assert runs[0] == []
    assert [(r["from"], r["to"]) for r in runs[1]] == [("gold", "silver")]
    verify = runner.invoke(app, ["audit", "verify", "--json", "-w", str(ws)])
    assert verify.exit_code == 0
    from sqlalchemy import select

    from tenure.config import resolve
    from tenure.store import schema as t
    from tenure.store.db import Store

    store = Store(resolve(ws).database_url)
    with store.reader() as conn:
        bodies = (
            conn.execute(
                select(t.audit.c.body).where(t.audit.c.kind == "tier").order_by(t.audit.c.seq)
            )
            .scalars()
            .all()
        )
    store.close()
    changes = [(json.loads(b)["from"], json.loads(b)["to"]) for b in bodies]
    assert changes == [("base", "gold"), ("gold", "silver")]
    assert "grace period" in json.loads(bodies[1])["reason"]

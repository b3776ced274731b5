"""Models in use: trained on point-in-time history, registered, promoted, scoring the pipeline."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import msgspec
import orjson
import pytest
from typer.testing import CliRunner

from tenure.cli import app
from tenure.errors import ConfigError, InputError
from tenure.events.parse import LineParser, RawLine
from tenure.scoring import drift, gbm
from tenure.scoring.baseline import BaselineScorer
from tenure.scoring.model import ModelScorer, PurchaseScorer
from tenure.services import models
from tenure.services.backtest import backtest
from tenure.sim.population import PopulationSpec, generate
from tenure.store import repo
from tenure.store.db import Store

SPEC = PopulationSpec(customers=500, days=120, seed=21)
runner = CliRunner()


@pytest.fixture(scope="module")
def events():
    parser = LineParser()
    return [parser.parse(RawLine(i, orjson.dumps(e))) for i, e in enumerate(generate(SPEC), 1)]


@pytest.fixture(scope="module")
def trained(events):
    return models.train(events, horizon_days=30, churn="cancelled")


def test_training_reports_honest_metrics(trained) -> None:
    m = trained.metrics
    assert m["customers"] > 400 and m["examples"] > m["customers"]
    assert m["auc"] > 0.7  # out-of-fold, customers grouped
    assert 0 < m["brier"] < m["churn_rate"] * (1 - m["churn_rate"])  # beats the base rate
    assert trained.bundle.purchases is not None
    assert set(trained.bundle.drift) >= {"score", "usage_7d"}
    assert trained.window["churn"] == "cancelled" and trained.window["cutoffs"] >= 3


def test_registry_promote_and_scorer_choice(tmp_path: Path, trained) -> None:
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    with store.reader() as conn:
        assert isinstance(models.scorer_for(conn), BaselineScorer)
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    with store.transaction() as conn:
        v1 = models.register(conn, trained, now)
        v2 = models.register(conn, trained, now + dt.timedelta(seconds=1))
    assert (v1, v2) == ("v1", "v2")
    with store.reader() as conn:
        fallback = models.scorer_for(conn)
    assert isinstance(fallback, PurchaseScorer) and fallback.version == "v2"
    with store.transaction() as conn:
        assert models.promote(conn, "v1") is None
        assert models.promote(conn, "v2") == "v1"
        with pytest.raises(ConfigError, match="no model version 'v9'"):
            models.promote(conn, "v9")
    with store.reader() as conn:
        active = models.scorer_for(conn)
        statuses = {m["version"]: m["status"] for m in repo.models(conn)}
    assert isinstance(active, ModelScorer) and active.version == "v2"
    assert statuses == {"v1": "retired", "v2": "active"}
    store.close()


def test_model_scores_are_calibrated_probabilities_with_reasons(events, trained) -> None:
    scorer = ModelScorer("v1", trained.bundle)
    snaps = models.final_snapshots(events, max(e.occurred_at for e in events))[:50]
    scores = scorer.score_many(snaps)
    assert all(0.0 <= s.risk <= 1.0 for s in scores)
    assert all(s.scorer == "gbm" and s.version == "v1" for s in scores)
    assert not any(s.contributions for s in scores)  # explained only when asked
    reasons = scorer.explain_many(snaps)
    assert any(c.weight > 0 for why in reasons for c in why)
    assert all(len(why) <= 6 for why in reasons)
    assert scorer.score_many(snaps) == scores and scorer.explain_many(snaps) == reasons


def test_backtest_beats_chance_for_both_models(events) -> None:
    cutoff = dt.datetime(2026, 3, 15, tzinfo=dt.UTC)
    result = backtest(events, cutoff, 30, "cancelled")
    assert result["customers"] > 300
    for name in ("gbm", "bgnbd"):
        assert result["models"][name]["auc"] > 0.55, name
        assert 0 <= result["models"][name]["brier"] < 0.25
    assert set(result["models"]["bgnbd"]["params"]) == {"r", "alpha", "a", "b"}
    ev = result["expected_vs_actual_purchases"]
    assert ev["actual"] > 0 and 0.7 < ev["expected"] / ev["actual"] < 1.4


def test_backtest_refuses_unusable_cutoffs(events) -> None:
    first = min(e.occurred_at for e in events)
    with pytest.raises(InputError, match="not after the first event"):
        backtest(events, first - dt.timedelta(days=1), 30)
    with pytest.raises(InputError, match="horizon"):
        backtest(events, max(e.occurred_at for e in events), 30)
    with pytest.raises(InputError, match="no valid events"):
        backtest([], first, 30)


def test_pipeline_decisions_name_the_model_and_replay(tmp_path: Path, trained) -> None:
    history = tmp_path / "h.jsonl"
    history.write_bytes(
        b"\n".join(
            orjson.dumps(e) for e in generate(PopulationSpec(customers=150, days=60, seed=5))
        )
        + b"\n"
    )
    ws = tmp_path / "ws"
    ws.mkdir()
    store = Store(f"sqlite:///{ws / 'tenure.db'}")
    with store.transaction() as conn:
        version = models.register(conn, trained, dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
        models.promote(conn, version)
    store.close()
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "id: eager\ntrigger: {risk_at_least: 0.02}\nactions:\n"
        "  - {id: email, channel: email, cost: 0.01, uplift: 0.05}\n"
    )
    result = runner.invoke(
        app, ["run", "--events", str(history), "-w", str(ws), "--policy", str(policy), "--json"]
    )
    assert result.exit_code == 0, result.stderr
    result = runner.invoke(app, ["decisions", "list", "--json", "-w", str(ws), "--limit", "5"])
    rows = json.loads(result.stdout)
    assert rows and all(r["scorer"] == "gbm" and r["scorer_version"] == version for r in rows)
    assert all(r["explanation"] for r in rows)
    replayed = runner.invoke(app, ["audit", "replay", rows[0]["decision_id"], "-w", str(ws)])
    assert replayed.exit_code == 0 and "identical" in replayed.stdout
    drift = runner.invoke(app, ["model", "drift", "--json", "-w", str(ws)])
    report = json.loads(drift.stdout)
    assert report["version"] == version and {r["feature"] for r in report["features"]} >= {"score"}


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    ws = str(tmp_path / "ws")
    result = runner.invoke(app, ["model", "promote", "v7", "-w", ws])
    assert result.exit_code == 2 and "no model version 'v7'" in result.stderr
    result = runner.invoke(app, ["model", "train", "-w", ws])
    assert result.exit_code == 2 and "no events to train on" in result.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    result = runner.invoke(
        app,
        ["model", "backtest", "--events", str(empty), "--cutoff", "2026-03-01", "--horizon", "30"],
    )
    assert result.exit_code == 2 and "no valid events" in result.stderr
    result = runner.invoke(
        app, ["model", "backtest", "--events", str(empty), "--cutoff", "soon", "--horizon", "30"]
    )
    assert result.exit_code == 2 and "--cutoff" in result.stderr
    result = runner.invoke(app, ["model", "drift", "-w", ws])
    assert result.exit_code == 2 and "no customers" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_drift_right_after_training_is_quiet(events, trained) -> None:
    last = max(e.occurred_at for e in events)
    recent = models.recent_window(models.final_snapshots(events, last), last)
    x = gbm.matrix(recent)
    psi = {
        name: drift.psi(trained.bundle.drift[name], x[:, j]) for j, name in enumerate(gbm.FEATURES)
    }
    assert max(psi.values()) < 0.01


def test_no_purchase_model_without_repeat_buyers(events) -> None:
    last = max(e.occurred_at for e in events)
    snaps = models.final_snapshots(events, last)
    one_timers = [msgspec.structs.replace(f, frequency=0, recency_days=0.0) for f in snaps]
    assert models.fit_purchases(one_timers) is None
    assert models.fit_purchases(snaps) is not None


def test_purchase_fallback_is_calibrated_to_churn(events, trained) -> None:
    purchases = trained.bundle.purchases
    assert purchases is not None and purchases.calibration is not None
    last = max(e.occurred_at for e in events)
    buyers = [f for f in models.final_snapshots(events, last) if f.purchases_total]
    risk = purchases.churn_risk(buyers)
    raw = purchases.p_no_purchase(buyers, purchases.horizon_days)
    assert risk.mean() < raw.mean()  # silence is far commoner than churn
    assert ((risk >= 0) & (risk <= 1)).all()


def test_unknown_version_and_late_cutoff_are_named(tmp_path: Path, events) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    store = Store(f"sqlite:///{ws / 'tenure.db'}")
    with store.reader() as conn, pytest.raises(ConfigError, match="no model version 'v5'"):
        models.drift(conn, [], "v5", 0.2)
    last = max(e.occurred_at for e in events)
    with pytest.raises(InputError, match="horizon"):
        backtest(events, last - dt.timedelta(days=29, hours=12), 30)

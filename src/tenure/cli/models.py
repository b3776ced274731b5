"""Churn and value models: `model train|list|promote|backtest|drift`."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer

from tenure.cli.shell import (
    Column,
    JsonFlag,
    WorkspaceDir,
    err,
    model_app,
    open_workspace,
    out,
    query,
    render,
    table_of,
)
from tenure.errors import TenureError
from tenure.runtime import ingest

Churn = Annotated[
    str,
    typer.Option(
        help="Churn definition: no-activity (no purchase or usage in "
        "the horizon) or cancelled (a cancellation in it)."
    ),
]


Horizon = Annotated[
    float, typer.Option(min=1, help="Days after a cut-off in which churn is looked for.")
]


def _churn(value: str) -> Any:
    from tenure.features.training import CHURN_DEFINITIONS

    if value not in CHURN_DEFINITIONS:
        raise TenureError(f"--churn must be one of {', '.join(CHURN_DEFINITIONS)}, got {value!r}")
    return value


def _time(value: str, option: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise TenureError(f"{option} must be an ISO date or time, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@model_app.command("train")
def model_train(
    events: Annotated[
        str | None, typer.Option(help="Train on this file instead of the workspace's event log.")
    ] = None,
    horizon: Horizon = 30.0,
    churn: Churn = "no-activity",
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Train the classifier (rolling point-in-time cut-offs) and BG/NBD; register a candidate."""
    from tenure.services import models
    from tenure.store import repo

    definition = _churn(churn)
    _, store = open_workspace(workspace)
    if events is not None:
        history = ingest.load_events(events)
    else:
        with store.reader() as conn:
            history = list(repo.iter_events(conn))
    with err.status(f"training on {len(history):,} events"):
        trained = models.train(history, horizon, definition)
    with store.transaction() as conn:
        version = models.register(conn, trained, dt.datetime.now(dt.UTC))
    m = trained.metrics
    render(
        {"version": version, "metrics": m, "training_window": trained.window},
        as_json,
        f"registered [bold]{version}[/bold] (candidate): {m['examples']:,} examples, "
        f"{m['customers']:,} customers, churn rate {m['churn_rate']:.1%}",
        f"out-of-fold AUC {m['auc']:.3f}, Brier {m['brier']:.4f}",
        f"promote it with: tenure model promote {version}",
    )


@model_app.command("list")
def model_list(workspace: WorkspaceDir = None, as_json: JsonFlag = False) -> None:
    """Registered models, newest first."""
    from tenure.store import repo

    rows = query(workspace, repo.models)
    columns: dict[str, Column] = {
        "version": "version",
        "status": "status",
        "algorithm": "algorithm",
        "created": lambda r: str(r["created_at"])[:19],
        "examples": lambda r: r["metrics"].get("examples"),
        "auc": lambda r: r["metrics"].get("auc"),
        "brier": lambda r: r["metrics"].get("brier"),
        "window": lambda r: (
            f"{r['training_window']['first_event'][:10]}..{r['training_window']['last_event'][:10]}"
        ),
    }
    render(rows, as_json, table_of(rows, columns))


@model_app.command("promote")
def model_promote(version: str, workspace: WorkspaceDir = None) -> None:
    """Make VERSION the model the pipeline scores with; the previous active one is retired."""
    from tenure.services import models

    _, store = open_workspace(workspace)
    with store.transaction() as conn:
        previous = models.promote(conn, version)
    out.print(f"{version} is active" + (f"; {previous} retired" if previous else ""))


@model_app.command("backtest")
def model_backtest(
    events: Annotated[str, typer.Option(help="JSONL or CSV history to test on.")],
    cutoff: Annotated[
        str,
        typer.Option(
            help="Features from before this time (ISO; UTC if no "
            "zone), labels from the horizon after it."
        ),
    ],
    horizon: Horizon = 30.0,
    churn: Churn = "no-activity",
    as_json: JsonFlag = False,
) -> None:
    """How well BG/NBD and the classifier would have predicted churn on your own history."""
    from tenure.services.backtest import backtest

    at = _time(cutoff, "--cutoff")
    definition = _churn(churn)
    history = ingest.load_events(events)
    with err.status(f"backtesting on {len(history):,} events"):
        result = backtest(history, at, horizon, definition)
    ev = result["expected_vs_actual_purchases"]
    render(
        result,
        as_json,
        f"{result['customers']:,} customers at {result['cutoff']}, churn ({churn}) within "
        f"{horizon:g} days: {result['churn_rate']:.1%}",
        *(
            f"  {name:6s} AUC {m['auc']:.3f}  Brier {m['brier']:.4f}"
            for name, m in result["models"].items()
        ),
        f"  purchases in the horizon: expected {ev['expected']}, actual {ev['actual']}",
    )
    for warning in [] if as_json else result["warnings"]:
        err.print(f"[yellow]warning:[/yellow] {warning}")


@model_app.command("drift")
def model_drift(
    version: Annotated[
        str | None,
        typer.Option(help="Model to compare against (default: the active one, else the newest)."),
    ] = None,
    threshold: Annotated[float, typer.Option(help="PSI above which a feature is flagged.")] = 0.2,
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Population stability of each feature and the score: training window against now."""
    from tenure.features.snapshot import snapshot
    from tenure.services import models
    from tenure.store.queries import customer_states

    _, store = open_workspace(workspace)
    with store.reader() as conn:
        states = customer_states(conn)
        if not states:
            raise TenureError("the workspace holds no customers yet")
        newest = max(s.last_seen or 0 for s in states)
        as_of = dt.datetime.fromtimestamp(newest, dt.UTC)
        recent = models.recent_window([snapshot(s, as_of) for s in states], as_of)
        used, rows = models.drift(conn, recent, version, threshold)
    data = {
        "version": used,
        "as_of": as_of.isoformat(),
        "customers": len(recent),
        "threshold": threshold,
        "features": rows,
    }
    columns: dict[str, Column] = {
        "feature": "feature",
        "psi": "psi",
        "flag": lambda r: "DRIFT" if r["drifted"] else "",
    }
    title = f"drift against {used} ({len(recent):,} customers as of {as_of:%Y-%m-%d})"
    render(data, as_json, table_of(rows, columns, title))

"""Perceive, decide and prove: `run`, `demo`, `generate`, `stats`, `simulate`, events, audit,
customers, decisions, rejects, models, policies and reports."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from tenure import __version__
from tenure.cli.shell import (
    Column,
    JsonFlag,
    WorkspaceDir,
    app,
    audit_app,
    customers_app,
    decisions_app,
    dump,
    err,
    events_app,
    fail,
    model_app,
    open_workspace,
    out,
    policy_app,
    query,
    rejects_app,
    render,
    report_app,
    table_of,
)
from tenure.config import resolve
from tenure.errors import AuditError, TenureError
from tenure.events.envelope import json_schema
from tenure.journeys.library import JourneyLibrary
from tenure.policy.decide import DEFAULT_GUARDRAILS
from tenure.policy.lifecycle import PolicySet
from tenure.policy.model import Policy, default_policy, load_policy, parse_policy
from tenure.runtime import ingest
from tenure.runtime.clock import EventClock, WallClock
from tenure.runtime.engine import Engine
from tenure.runtime.pipeline import DEFAULT_BATCH_SIZE, RunSummary
from tenure.store import queries
from tenure.store.db import Store
from tenure.workspace import Workspace

DEMO_BATCH_SIZE = 5_000
STDIN_BATCH_SIZE = 1_000


def _summary_tables(summary: RunSummary, seconds: float) -> list[Table]:
    """What a run did, as people read it: events and decisions."""
    counts = Table(title="events", show_header=False, title_justify="left")
    counts.add_column(style="bold")
    counts.add_column(justify="right")
    for name, value in (
        ("read", summary.read),
        ("accepted", summary.accepted),
        ("duplicate", summary.duplicates),
        ("rejected", summary.rejected),
    ):
        counts.add_row(name, f"{value:,}")
    rate = summary.read / seconds if seconds > 0 else 0.0
    counts.add_row("time", f"{seconds:.1f} s ({rate:,.0f} events/s)")
    decisions = Table(title="decisions", title_justify="left")
    decisions.add_column("outcome")
    decisions.add_column("count", justify="right")
    for action, n in sorted(summary.actions.items()):
        decisions.add_row(f"action: {action}", f"{n:,}")
    for guardrail, n in sorted(summary.suppressed.items()):
        decisions.add_row(f"suppressed: {guardrail}", f"{n:,}")
    if summary.decisions.get("human"):
        decisions.add_row("handed to a person", f"{summary.decisions['human']:,}")
    if summary.decisions.get("none"):
        decisions.add_row("none (no positive expected value)", f"{summary.decisions['none']:,}")
    if not summary.decisions:
        decisions.add_row("(no customer reached the policy's trigger)", "0")
    return [counts, decisions]


def _run(
    engine: Engine,
    source: ingest.Source,
    policy: Policy | PolicySet | None,
    batch_size: int,
    live: bool,
    quiet: bool,
) -> tuple[RunSummary, float]:
    clock = WallClock() if live else EventClock()
    start = time.perf_counter()
    size = source.size()

    def run(progress: Callable[[int], None] | None = None) -> RunSummary:
        return ingest.run(engine, policy, source, clock, batch_size, progress=progress)

    if quiet or size is None:
        summary = run()
    else:
        columns = (
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task(f"reading {Path(source.path).name}", total=size)
            summary = run(lambda n: bar.advance(task, n))
    return summary, time.perf_counter() - start


EventsOption = Annotated[
    str,
    typer.Option("--events", "-e", help="JSONL or CSV file of events, or - for standard input."),
]
PolicyOption = Annotated[
    Path | None, typer.Option(help="Policy YAML (default: the built-in retention policy).")
]
BatchSizeOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Events per transaction; each customer with new events is evaluated once per "
        f"batch (default {DEFAULT_BATCH_SIZE:,} for files, {STDIN_BATCH_SIZE:,} for standard "
        "input, so a pipe is not held until a large batch fills).",
        show_default=False,
    ),
]
FormatOption = Annotated[
    str | None, typer.Option("--format", help="jsonl or csv (default: from the file extension).")
]
CsvMapOption = Annotated[
    Path | None, typer.Option(help="YAML mapping of CSV columns: columns/payload/constants.")
]
MapOption = Annotated[
    list[str] | None,
    typer.Option(
        "--map", help="CSV: FIELD=COLUMN, e.g. customer_id=member or payload.amount=total."
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="CSV: FIELD=VALUE for every row, e.g. type=purchase."),
]
LiveOption = Annotated[
    bool,
    typer.Option(
        help="Decide at wall-clock time instead of event time, and run the journey worker "
        "alongside (Temporal dev server in the workspace, or TENURE_TEMPORAL_ADDRESS) until "
        "Ctrl-C."
    ),
]


@app.command()
def run(
    events: EventsOption,
    policy: PolicyOption = None,
    workspace: WorkspaceDir = None,
    batch_size: BatchSizeOption = None,
    input_format: FormatOption = None,
    csv_map: CsvMapOption = None,
    map_: MapOption = None,
    set_: SetOption = None,
    live: LiveOption = False,
    as_json: JsonFlag = False,
) -> None:
    """Process events: validate, deduplicate, update features, score, decide and audit."""
    fmt = ingest.detect_format(events, input_format)
    mapping = ingest.load_mapping(csv_map, map_ or [], set_ or []) if fmt == "csv" else None
    source = ingest.Source(events, fmt, mapping)
    source.check()
    # A bad policy file fails before the workspace is touched.
    chosen = load_policy(policy) if policy is not None else None
    settings, store = open_workspace(workspace)
    engine = Engine(Workspace.load(settings), store)
    size = batch_size or (STDIN_BATCH_SIZE if source.is_stdin else DEFAULT_BATCH_SIZE)
    worker = None
    if live:
        from tenure.runtime.live import LiveWorker

        worker = LiveWorker(settings, store)
        temporal = worker.start()
        err.print(f"journeys run on Temporal at {temporal.address}; web UI {temporal.ui or '-'}")
    summary, seconds = _run(engine, source, chosen, size, live, as_json)
    render(
        {**summary.to_record(), "seconds": round(seconds, 3)},
        as_json,
        *_summary_tables(summary, seconds),
    )
    if worker is not None:
        _keep_running(worker)


def _keep_running(worker: Any) -> None:
    """`run --live`: the events are done; the journey worker runs until Ctrl-C."""
    err.print("events done; the journey worker keeps running (Ctrl-C to stop)")
    try:
        worker.wait()
    except KeyboardInterrupt:
        err.print("stopping the worker")
    finally:
        worker.stop()


@app.command()
def generate(
    out_path: Annotated[Path, typer.Option("--out", "-o", help="JSONL file to write.")],
    customers: Annotated[int, typer.Option(min=0, help="Number of customers.")] = 2000,
    days: Annotated[int, typer.Option(min=0, help="Days of history.")] = 90,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same bytes.")] = 7,
    start: Annotated[str, typer.Option(help="First day (YYYY-MM-DD).")] = "2026-01-01",
) -> None:
    """Write a synthetic customer history (usage, purchases, tickets, consent, churn)."""
    from tenure.sim.population import PopulationSpec, write_jsonl

    try:
        first = dt.date.fromisoformat(start)
    except ValueError:
        raise fail(TenureError(f"--start must be a date like 2026-01-01, got {start!r}")) from None
    spec = PopulationSpec(customers=customers, days=days, seed=seed, start=first)
    try:
        n = write_jsonl(spec, out_path)
    except OSError as exc:
        raise fail(TenureError(f"cannot write {out_path}: {exc.strerror}")) from None
    err.print(f"wrote {n:,} events for {customers:,} customers over {days} days to {out_path}")


def _journey_table(compressed: Any) -> None:
    table = Table(title="journeys (Temporal, time-skipping)", title_justify="left")
    table.add_column("journeys")
    table.add_column("count", justify="right")
    table.add_row("started", f"{compressed.started:,}")
    table.add_row("completed", f"{compressed.completed:,}")
    table.add_row("customers who redeemed on the way", f"{compressed.responded:,}")
    for outcome, n in sorted(compressed.outcomes.items()):
        table.add_row(f"outcome: {outcome}", f"{n:,}")
    table.add_row("time", f"{compressed.seconds:.1f} s for 10 days of journey time")
    out.print(table)


def _next_steps(ws: str) -> None:
    out.print("\nwhere to look next:")
    out.print(f"  tenure stats --json{ws}")
    out.print(f"  tenure decisions list --limit 10{ws}")
    out.print(f"  tenure customers show CUSTOMER_ID{ws}")
    out.print(f"  tenure audit verify{ws}")
    out.print(f"  tenure journeys list --limit 10{ws}")
    out.print(
        f"  tenure tokens create --role operator --name YOU{ws} && tenure serve{ws}"
        "   (dashboard: http://127.0.0.1:8000/dashboard)"
    )


@app.command()
def demo(
    workspace: WorkspaceDir = None,
    customers: Annotated[
        int, typer.Option(min=1, help="Customers in the generated population.")
    ] = 2000,
    days: Annotated[int, typer.Option(min=1, help="Days of generated history.")] = 90,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    batch_size: Annotated[
        int,
        typer.Option(
            min=1,
            help="Events per batch. Each customer is decided at most once per batch, so the demo "
            "uses small batches (about every four days of its history) rather than the run "
            "default tuned for throughput.",
        ),
    ] = DEMO_BATCH_SIZE,
    journeys: Annotated[
        bool,
        typer.Option(
            help="Run the decided journeys on Temporal's time-skipping test server, so their "
            "days of waiting pass in seconds; some customers redeem their offer on the way."
        ),
    ] = True,
) -> None:
    """Generate a population (if absent), run it with the default policy and its journeys."""
    from tenure.sim.population import PopulationSpec, write_jsonl

    settings = resolve(workspace)
    path = settings.workspace / f"demo-{customers}x{days}-s{seed}.jsonl"
    if not path.exists():
        err.print(f"generating {customers:,} customers x {days} days -> {path}")
        tmp = path.with_suffix(".partial")
        write_jsonl(PopulationSpec(customers=customers, days=days, seed=seed), tmp)
        tmp.replace(path)
    engine = Engine(Workspace.load(settings), Store(settings.database_url))
    summary, seconds = _run(
        engine,
        ingest.Source(str(path)),
        default_policy(),
        batch_size,
        live=False,
        quiet=False,
    )
    compressed = None
    if journeys:
        from tenure.services.demo import run_compressed

        with err.status("running journeys on the time-skipping Temporal server"):
            compressed = run_compressed(engine, default_policy())
    out.print(f"[bold]tenure demo[/bold]: {path} (batches of {batch_size:,} events)")
    for table in _summary_tables(summary, seconds):
        out.print(table)
    if compressed is not None:
        _journey_table(compressed)
    _next_steps(f" --workspace {workspace}" if workspace else "")
    if summary.duplicates == summary.read and summary.read:
        out.print(
            "\n(every event was already in this workspace: run with a fresh --workspace "
            "to see decisions made again)"
        )


@app.command()
def stats(workspace: WorkspaceDir = None, as_json: JsonFlag = False) -> None:
    """Counts of events, duplicates, rejects, decisions, suppressions and outbox rows."""
    figures = query(workspace, queries.stats)
    table = Table(show_header=False)
    for key, value in figures.items():
        table.add_row(key, str(value))
    render(figures, as_json, table)


@app.command()
def version() -> None:
    """Print tenure's version."""
    typer.echo(__version__)


@events_app.command("schema")
def events_schema(workspace: WorkspaceDir = None) -> None:
    """Print the JSON Schema of the event envelope (with the workspace's registered types)."""
    settings = resolve(workspace) if workspace else None
    dump(json_schema(settings.extra_event_types if settings else ()))


@audit_app.command("verify")
def audit_verify(workspace: WorkspaceDir = None, as_json: JsonFlag = False) -> None:
    """Recompute the hash chain; exit 1 naming the first broken record if it does not hold."""
    _, store = open_workspace(workspace)
    with store.reader() as conn:
        checked, broken, head = queries.verify_audit(conn)
    result = {
        "records": checked,
        "head": head,
        "ok": broken is None,
        "first_broken": None if broken is None else {"seq": broken.seq, "problem": broken.problem},
    }
    if broken is not None and not as_json:
        # The verdict of a broken chain goes to stderr: scripts read stdout for results.
        err.print(
            f"[red]audit chain broken[/red] at record {broken.seq}: {escape(broken.problem)} "
            f"({checked:,} chain records checked)"
        )
    else:
        render(result, as_json, f"audit chain ok: {checked:,} records verified")
    if broken is not None:
        raise typer.Exit(1)


@audit_app.command("replay")
def audit_replay(
    decision_id: str, workspace: WorkspaceDir = None, as_json: JsonFlag = False
) -> None:
    """Re-run a decision from its audit record and check the result is identical."""
    from tenure.audit.replay import replay
    from tenure.services.models import scorer_named
    from tenure.store import repo

    _, store = open_workspace(workspace)
    with store.reader() as conn:
        body = queries.audit_body(conn, decision_id)
        if body is None:
            raise TenureError(f"no audit record for decision {decision_id}")
        content = repo.policy_content(conn, body["lineage"]["policy_hash"])
        lineage = body["lineage"]
        scorer = scorer_named(conn, lineage["scorer"], lineage["scorer_version"])
    if content is None:
        raise AuditError("the policy version of this decision is not stored")
    replayed = replay(body, parse_policy(content, "stored policy"), scorer)
    same = replayed.to_record() == body["decision"]
    render(
        {"decision_id": decision_id, "identical": same, "replayed": replayed.to_record()},
        as_json,
        f"{escape(decision_id)}: replay {'identical' if same else 'DIFFERS'} "
        f"({replayed.status}, {replayed.action_id or replayed.guardrail or '-'})",
    )
    if not same:
        raise typer.Exit(1)


@customers_app.command("show")
def customers_show(
    customer_id: str, workspace: WorkspaceDir = None, as_json: JsonFlag = False
) -> None:
    """A customer's features now (as of their last event), risk with reasons, and decisions."""
    from tenure.features.snapshot import Features
    from tenure.scoring.types import Score
    from tenure.services.views import customer_view

    view = query(workspace, lambda conn: customer_view(conn, customer_id))
    if view is None:
        err.print(f"[red]error:[/red] no customer {customer_id!r} in this workspace")
        raise typer.Exit(1)
    features = Features.from_record(view["features"])
    sc = Score.from_record(view["score"])
    lines = [
        f"[bold]{escape(customer_id)}[/bold]  as of {features.as_of}  plan={features.plan} "
        f"status={features.subscription_status} tz={features.timezone}",
        f"risk {sc.risk:.2f} ({sc.scorer} v{sc.version}), value {sc.value:,.2f}",
        *(
            f"  {'+' if c.weight > 0 else '-'} {c.feature} = {c.value} ({c.weight:+.2f})"
            for c in sc.contributions
        ),
    ]
    table = Table(title="features", show_header=False, title_justify="left")
    for key, value in features.to_record().items():
        if key not in ("windows", "customer_id"):
            table.add_row(key, escape(str(value)))
    render(view, as_json, *lines, table, _decision_table(view["decisions"]))


@customers_app.command("erase")
def customers_erase(
    customer_id: str,
    by: Annotated[str, typer.Option("--by", help="Who asked for the erasure (audited).")],
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Erase a customer's personal data (name, email, phone) everywhere it is kept; the audit
    chain and the ledger still verify, and the erasure itself is audited."""
    from tenure.services.personal import erase

    _, store = open_workspace(workspace)
    done = erase(store, customer_id, by)
    fields = ", ".join(done["fields_erased"]) or "no personal fields were held"
    render(
        done,
        as_json,
        f"erased {escape(customer_id)}: {fields}; {done['events_redacted']} event(s) redacted, "
        f"{done['rejects_blanked']} rejected line(s) blanked, "
        f"{done['deliveries_scrubbed']} delivery payload(s) scrubbed",
    )


def _decision_table(rows: list[dict[str, Any]]) -> Table:
    columns: dict[str, Column] = {
        "decided_at": lambda r: str(r["decided_at"])[:19],
        "decision_id": "decision_id",
        "customer_id": "customer_id",
        "status": "status",
        "action / guardrail": lambda r: r["action_id"] or r["guardrail"],
        "risk": lambda r: f"{r['risk']:.2f}",
    }
    table = table_of(rows, columns, "decisions")
    table.columns[1].no_wrap, table.columns[1].min_width = True, 26  # copied into other commands
    return table


@decisions_app.command("list")
def decisions_list(
    customer: Annotated[str | None, typer.Option(help="Only this customer's decisions.")] = None,
    status: Annotated[str | None, typer.Option(help="action, none or suppressed.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 20,
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """List decisions, newest first."""
    if status is not None and status not in ("action", "none", "suppressed"):
        raise fail(TenureError(f"--status must be action, none or suppressed, got {status!r}"))
    rows = query(
        workspace,
        lambda conn: queries.decisions(conn, customer_id=customer, limit=limit, status=status),
    )
    render(rows, as_json, _decision_table(rows))


@decisions_app.command("show")
def decisions_show(decision_id: str, workspace: WorkspaceDir = None) -> None:
    """One decision with its candidates, guardrail verdicts and lineage (JSON)."""
    body = query(workspace, lambda conn: queries.audit_body(conn, decision_id))
    if body is None:
        err.print(f"[red]error:[/red] no decision {decision_id!r}")
        raise typer.Exit(1)
    dump(body)


@rejects_app.command("list")
def rejects_list(
    limit: Annotated[int, typer.Option(min=1, help="At most this many, oldest first.")] = 100,
    run_id: Annotated[str | None, typer.Option(help="Only this run's rejects.")] = None,
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """List rejected input lines with their line number and reason."""
    rows = query(workspace, lambda conn: queries.rejects(conn, limit=limit, run_id=run_id))
    columns: dict[str, Column] = {
        "line": "line_no",
        "field": "field",
        "reason": lambda r: escape(r["reason"]),
        "raw": lambda r: escape(r["raw"] if len(r["raw"]) <= 60 else r["raw"][:57] + "..."),
    }
    render(rows, as_json, table_of(rows, columns))


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


@policy_app.command("validate")
def policy_validate(path: Path) -> None:
    """Check a policy file; print its id, version (content hash) and actions."""
    p = load_policy(path)
    out.print(f"{p.id} ({p.label or 'no label'}) version {p.content_hash[:12]}: valid")
    out.print(
        f"  trigger: risk >= {p.trigger.risk_at_least:g}"
        + (f", or {', '.join(p.trigger.on_events)} while at risk" if p.trigger.on_events else "")
    )
    for a in p.actions:
        out.print(f"  action {a.id}: {a.channel}, cost {a.cost:g}, prior uplift {a.uplift:g}")


@policy_app.command("add")
def policy_add(
    path: Path,
    by: Annotated[str, typer.Option(help="Who wrote this version (an approver must differ).")],
    workspace: WorkspaceDir = None,
) -> None:
    """Register a policy file as a draft version in the workspace."""
    from tenure.services import policies

    policy = load_policy(path)
    _, store = open_workspace(workspace)
    with store.transaction() as conn:
        version, new = policies.register(conn, policy, by, dt.datetime.now(dt.UTC))
    state = "registered as draft" if new else "already registered"
    out.print(f"{policy.id} version {version[:12]} {state}")


@policy_app.command("list")
def policy_list(workspace: WorkspaceDir = None, as_json: JsonFlag = False) -> None:
    """Registered policy versions with their status, author and approver."""
    from tenure.services import policies

    rows = query(workspace, policies.listing)
    columns: dict[str, Column] = {
        "version": lambda r: r["policy_hash"][:12],
        "policy": "policy_id",
        "label": "label",
        "status": lambda r: (
            r["status"] + (f" {r['canary_percent']:g}%" if r["status"] == "canary" else "")
        ),
        "author": "author",
        "approved by": "approved_by",
        "changed": lambda r: str(r["changed_at"])[:19],
    }
    table = table_of(rows, columns)
    table.columns[0].no_wrap = True
    render(rows, as_json, table)


@policy_app.command("promote")
def policy_promote(
    version: str,
    to: Annotated[str, typer.Option("--to", help="shadow, canary, active or retired.")],
    by: Annotated[
        str,
        typer.Option(
            help="Who makes the change (for active: the approver, who must not be the author)."
        ),
    ],
    percent: Annotated[float | None, typer.Option(help="Canary share of customers, 0-100.")] = None,
    workspace: WorkspaceDir = None,
) -> None:
    """Move a policy version through draft -> shadow -> canary -> active -> retired."""
    from tenure.services import policies

    _, store = open_workspace(workspace)
    with store.transaction() as conn:
        plan = policies.promote(conn, version, to, by, percent, dt.datetime.now(dt.UTC))
    share = f" for {plan.percent:g}% of customers" if plan.percent else ""
    out.print(
        f"{plan.policy_id} {plan.version[:12]}: {plan.from_status} -> {plan.to_status}"
        f"{share} (by {plan.by})"
    )
    for retired in plan.retired:
        out.print(f"  {retired[:12]} retired")


@policy_app.command("schema")
def policy_schema() -> None:
    """Print the JSON Schema of policy files."""
    from tenure.policy.model import Policy

    dump(Policy.model_json_schema())


@policy_app.command("test")
def policy_test(
    path: Path,
    cases: Annotated[Path, typer.Option(help="YAML file of cases and the decision each must get.")],
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Run a policy on test cases; exit 1 if any case gets another decision than expected."""
    from tenure.policy.cases import load_cases, run_cases

    settings = resolve(workspace) if workspace else None
    results = run_cases(
        load_cases(cases),
        load_policy(path),
        settings.guardrails if settings else DEFAULT_GUARDRAILS,
    )
    failed = [r for r in results if not r.passed]
    table = Table()
    for col in ("case", "result", "expected", "got"):
        table.add_column(col)
    for r in results:
        got = {k: r.got.get(k) for k in r.expected}
        verdict = "[green]pass[/green]" if r.passed else "[red]FAIL[/red]"
        table.add_row(escape(r.name), verdict, escape(str(r.expected)), escape(str(got)))
    render(
        [
            {"name": r.name, "passed": r.passed, "got": r.got, "expected": r.expected}
            for r in results
        ],
        as_json,
        table,
        f"{len(results) - len(failed)} passed, {len(failed)} failed",
    )
    if failed:
        raise typer.Exit(1)


@policy_app.command("diff")
def policy_diff(
    old: Path,
    new: Path,
    events: Annotated[str, typer.Option(help="JSONL or CSV history to replay through both.")],
    batch_size: Annotated[int, typer.Option(min=1, help="Events per batch in both replays.")] = (
        DEMO_BATCH_SIZE
    ),
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Replay events through two policies and list the customers whose decisions differ."""
    from tenure.services.diff import diff

    a, b = load_policy(old), load_policy(new)
    settings, store = open_workspace(workspace)
    engine = Engine(Workspace.load(settings), store)
    history = ingest.load_events(events, engine.workspace.parser())
    with err.status(f"replaying {len(history):,} events through both policies"):
        result = diff(engine, history, a, b, batch_size)

    def brief(ds: list[dict[str, Any]]) -> str:
        return "; ".join(
            f"{d['decided_at'][:10]} {d['action_id'] or d['guardrail'] or d['status']}" for d in ds
        )

    columns: dict[str, Column] = {
        "customer": "customer_id",
        "old": lambda r: brief(r["old"]),
        "new": lambda r: brief(r["new"]),
    }
    render(
        result,
        as_json,
        f"old {result['old']['policy_id']}: {result['old']['decisions']}",
        f"new {result['new']['policy_id']}: {result['new']['decisions']}",
        f"{len(result['differing']):,} of {result['customers']:,} customers decided differently",
        table_of(result["differing"][:50], columns),
    )


@app.command()
def simulate(
    customers: Annotated[int, typer.Option(min=100, help="Synthetic customers.")] = 20_000,
    days: Annotated[int, typer.Option(min=35, help="Days simulated (weekly cohorts).")] = 196,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same result.")] = 7,
    policy: Annotated[
        Path | None, typer.Option(help="Policy to run for best-value (default: one offer).")
    ] = None,
    targeting: Annotated[
        str, typer.Option(help="best-value, riskiest, random, oracle, or all.")
    ] = "all",
    budget: Annotated[
        float | None, typer.Option(min=0, help="Total budget (default: a tenth of customers).")
    ] = None,
    control_share: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.5,
            help="The workspace's global control group for best-value (the policy's experiment "
            "may hold back more while it learns).",
        ),
    ] = 0.05,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            "-w",
            help="Take the journeys the policy names from this workspace's journeys/ too "
            "(default: the built-in journeys only).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Closed loop: a policy decides for customers whose churn and response are known.

    Actions with a journey run it in simulated time: customers the offer saves redeem it, the
    others let it lapse, and compensated journeys give their cost back to the budget.
    """
    from tenure.sim.closed_loop import TARGETINGS, SimSpec, compare

    modes = TARGETINGS if targeting == "all" else (targeting,)
    if any(m not in TARGETINGS for m in modes):
        raise fail(TenureError(f"--targeting must be all or one of {', '.join(TARGETINGS)}"))
    chosen = load_policy(policy) if policy else None
    spec = SimSpec(
        customers=customers, days=days, seed=seed, budget=budget, control_share=control_share
    )
    library = Workspace.open(workspace).journeys if workspace else JourneyLibrary()
    journeys = library.specs
    with err.status(f"simulating {customers:,} customers over {days} days"):
        result = compare(spec, modes, chosen, journeys)  # type: ignore[arg-type]
    render(result, as_json, _simulation_table(result))


def _simulation_table(result: dict[str, Any]) -> Table:
    table = Table(
        title="same budget for every mode; 'learned' = the second half of the run",
        caption="exp. = expected saved customers (from the known churn probabilities)",
        box=None,
        padding=(0, 1),
        pad_edge=False,
    )
    for col in (
        "mode",
        "treated",
        "saved",
        "value\nsaved",
        "cost\n/save",
        "of\noracle",
        "learned\nsaved",
        "learned\nexp.",
        "learned\noracle",
    ):
        table.add_column(col, no_wrap=True, justify="left" if col == "mode" else "right")
    for mode, r in result["modes"].items():
        table.add_row(
            mode,
            str(r["treated"]),
            str(r["saved"]),
            f"{r['saved_value']:,.0f}",
            "-" if r["cost_per_saved"] is None else f"{r['cost_per_saved']:.2f}",
            f"{r['oracle_share']:.0%}",
            str(r["learned"]["saved"]),
            f"{r['learned']['expected_saved']:.1f}",
            f"{r['learned']['oracle_share']:.0%}",
        )
    return table


@report_app.command("lift")
def report_lift(
    window: Annotated[
        float,
        typer.Option(min=1, help="Days after a decision in which a cancellation counts as churn."),
    ] = 30.0,
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Churn of treated customers against the control group, per policy version and action."""
    from tenure.policy.lift import report

    decided, cancels, observed, budgets = query(workspace, queries.lift_inputs)
    rows = report(decided, cancels, observed, window) if observed else []
    data = {"window_days": window, "observed_until": observed, "rows": rows, "budgets": budgets}
    if not rows:
        render(data, as_json, "no treated customers yet: run some events with a policy first")
        return
    table = Table(title=f"churn within {window:g} days of the decision (95% intervals)")
    for col in ("policy", "action", "treated", "control", "reduction", "saved", "cost/saved"):
        table.add_column(col)

    def rate(r: dict[str, Any]) -> str:
        if r["churn_rate"] is None:
            return f"n={r['customers']} (no outcome yet)"
        return f"{r['churn_rate']:.1%} of {r['known']} [{r['ci95'][0]:.1%}, {r['ci95'][1]:.1%}]"

    for r in rows:
        lift = r["lift"]
        reduction = (
            "-"
            if lift["churn_reduction"] is None
            else f"{lift['churn_reduction']:+.1%} [{lift['ci95'][0]:+.1%}, {lift['ci95'][1]:+.1%}]"
        )
        table.add_row(
            f"{r['policy_id']} {r['policy_version']}",
            r["action_id"],
            rate(r["treated"]),
            rate(r["control"]),
            reduction,
            "-" if lift["saved"] is None else f"{lift['saved']:.1f}",
            "-" if lift["cost_per_saved"] is None else f"{lift['cost_per_saved']:.2f}",
        )
    render(data, as_json, table)

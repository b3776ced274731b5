"""Running events through the engine: `run`, `generate`, `demo`, `stats`, `simulate`, `version`."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
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
    DEMO_BATCH_SIZE,
    STDIN_BATCH_SIZE,
    JsonFlag,
    WorkspaceDir,
    app,
    err,
    fail,
    open_workspace,
    out,
    plain,
    query,
    render,
    table_of,
)
from tenure.config import resolve
from tenure.errors import InputError, TenureError
from tenure.journeys.library import JourneyLibrary
from tenure.policy.lifecycle import PolicySet
from tenure.policy.model import Policy, default_policy, load_policy
from tenure.runtime import ingest
from tenure.runtime.clock import EventClock, WallClock
from tenure.runtime.engine import Engine
from tenure.runtime.pipeline import DEFAULT_BATCH_SIZE, RunSummary
from tenure.store import queries
from tenure.store.db import Store
from tenure.workspace import Workspace

TOP_REJECTS = 3  # reasons a run's summary shows; `tenure rejects list` has them all


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
        ("late", summary.late),
        ("instants evaluated", summary.instants),
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
    if summary.on_silence:
        # Across every row above: the decisions a silence timer triggered.
        decisions.add_row("of all the above, on silence", f"{summary.on_silence:,}")
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
        help="Events per transaction (default "
        f"{DEFAULT_BATCH_SIZE:,} for files, {STDIN_BATCH_SIZE:,} for standard input, so a pipe "
        "is not held until a large batch fills). It changes speed, never decisions: customers "
        "are decided at instants of event time (see the README).",
        show_default=False,
    ),
]


FormatOption = Annotated[
    str | None, typer.Option("--format", help="jsonl or csv (default: from the file extension).")
]


CsvMapOption = Annotated[
    Path | None,
    typer.Option(
        help="YAML mapping of a CSV export: columns, payload, constants, timezone, date_format, "
        "decimal, thousands, values, where, group_by, sum (see examples/*.map.yaml)."
    ),
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


TimezoneOption = Annotated[
    str | None,
    typer.Option(
        help="CSV: IANA time zone of times written without an offset, e.g. Europe/Berlin.",
        show_default=False,
    ),
]


DateFormatOption = Annotated[
    str | None,
    typer.Option(
        help='CSV: strptime format of the time column, e.g. "%d.%m.%Y %H:%M" (ISO 8601 and '
        "a trailing offset such as +0100 are read too).",
        show_default=False,
    ),
]


DecimalOption = Annotated[
    str | None,
    typer.Option(help="CSV: decimal mark of the payload's numbers, . or ,", show_default=False),
]


ThousandsOption = Annotated[
    str | None,
    typer.Option(
        help="CSV: thousands separator of the payload's numbers, e.g. , or .", show_default=False
    ),
]


WhereOption = Annotated[
    str | None,
    typer.Option(
        help="CSV: import only the rows where this expression holds, e.g. 'status != \"refunded\"' "
        "(other rows are skipped, not rejected).",
        show_default=False,
    ),
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
    timezone: TimezoneOption = None,
    date_format: DateFormatOption = None,
    decimal: DecimalOption = None,
    thousands: ThousandsOption = None,
    where: WhereOption = None,
    live: LiveOption = False,
    as_json: JsonFlag = False,
) -> None:
    """Process events: validate, deduplicate, update features, score, decide and audit.

    A bad line is kept as a reject and the run goes on; the summary shows the top reasons and
    the command that lists them all. Exit code 2 (as for unusable input) when lines were read
    and every one was rejected.
    """
    fmt = ingest.detect_format(events, input_format)
    csv_options = {
        "timezone": timezone,
        "date_format": date_format,
        "decimal": decimal,
        "thousands": thousands,
        "where": where,
    }
    mapping = (
        ingest.load_mapping(csv_map, map_ or [], set_ or [], csv_options) if fmt == "csv" else None
    )
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
    _report(summary, seconds, store, f" --workspace {workspace}" if workspace else "", as_json)
    if _all_rejected(summary):
        if worker is not None:
            worker.stop()
        # One line within 80 columns; the summary above names the workspace too.
        raise fail(
            InputError(
                f"all {summary.read:,} lines rejected: tenure rejects list --run {summary.run_id}"
            )
        )
    if worker is not None:
        _keep_running(worker)


def _all_rejected(summary: RunSummary) -> bool:
    """Lines were read and not one became an event (nor was one already known)."""
    return summary.read > 0 and summary.accepted + summary.duplicates == 0


def _report(summary: RunSummary, seconds: float, store: Store, ws: str, as_json: bool) -> None:
    """The run's summary; with rejects, their top reasons and the command that lists them."""
    top: list[dict[str, Any]] = []
    command = None
    if summary.rejected:
        with store.reader() as conn:
            top = queries.top_rejects(conn, summary.run_id, TOP_REJECTS)
        command = f"tenure rejects list --run {summary.run_id}{ws}"
    record = {
        **summary.to_record(),
        "seconds": round(seconds, 3),
        "top_rejects": top,
        "rejects_command": command,
    }
    parts: list[Any] = _summary_tables(summary, seconds)
    if command is not None:
        reasons = table_of(
            top, {"field": "field", "reason": "reason", "lines": lambda r: f"{r['count']:,}"}
        )
        reasons.title = f"rejects: top reasons of {summary.rejected:,}"
        reasons.columns[-1].justify = "right"
        parts += [reasons, f"every reject of this run:\n  {plain(command)}"]
    render(record, as_json, *parts)


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
            help="Events per transaction. It changes speed, never decisions: customers are "
            "decided at instants of event time (each day with events, silence timers).",
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

    Customers arrive in weekly cohorts; each is decided at the close of their arrival day
    (00:00 UTC the next day), the instant the engine uses for a customer whose signal arrived
    that day, with the features, trigger and decision id the engine would give it there.
    Silence timers are not simulated: each customer is decided once, at that close.

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

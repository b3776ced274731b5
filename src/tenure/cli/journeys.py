"""The act layer's commands: `worker`, `journeys`, `tasks`, `dlq`, `templates`; thin, like the
rest."""

from __future__ import annotations

import time
from collections import Counter
from typing import Annotated, Any

import typer

from tenure.cli.shell import (
    Column,
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
    service_logging,
    table_of,
)
from tenure.errors import InputError
from tenure.runtime.temporal import workflow_url
from tenure.store import acts

journeys_app = typer.Typer(help="Where every customer's journey stands.", no_args_is_help=True)
tasks_app = typer.Typer(help="The human task queue.", no_args_is_help=True)
dlq_app = typer.Typer(
    help="Dead letters: deliveries that failed after their last retry, and held messages.",
    no_args_is_help=True,
)
app.add_typer(journeys_app, name="journeys")
app.add_typer(tasks_app, name="tasks")
app.add_typer(dlq_app, name="dlq")
templates_app = typer.Typer(
    help="Message templates: <workspace>/templates/<name>.<channel>.{subject.txt,txt,html}.",
    no_args_is_help=True,
)
app.add_typer(templates_app, name="templates")


NO_JOURNEYS = "no journeys yet: they start when `tenure worker` dispatches decided actions"


def _time(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def _dispatch_once(settings: Any, store: Any) -> Counter[str]:
    """Dispatch the outbox once; a dev server started for it does not outlive it."""
    import asyncio

    from tenure.runtime.dispatch import Dispatcher
    from tenure.runtime.temporal import connect, ensure_server

    target = ensure_server(settings.workspace)

    async def dispatch() -> Counter[str]:
        client = await connect(target)
        heartbeat = settings.activity_heartbeat_s
        return await Dispatcher(store, client, activity_heartbeat_s=heartbeat).dispatch()

    try:
        return asyncio.run(dispatch())
    finally:
        target.stop()


@app.command()
def worker(
    workspace: WorkspaceDir = None,
    once: Annotated[
        bool, typer.Option(help="Dispatch the outbox once and exit (no worker keeps running).")
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve Prometheus metrics on this port (/metrics): the store's gauges and "
            "this worker's counters.",
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address the metrics listen on.")] = (
        "127.0.0.1"
    ),
) -> None:
    """Run journey workers: start journeys from the outbox, run their steps, deliver.

    Uses TENURE_TEMPORAL_ADDRESS when set; otherwise starts a Temporal dev server with its
    database in the workspace (temporal.db) and the web UI on http://localhost:8233.
    Safe to run more than once at a time: every start and every delivery happens once.
    """
    from tenure.runtime.live import LiveWorker

    service_logging()
    settings, store = open_workspace(workspace)
    if metrics_port is not None and not once:
        from prometheus_client import start_http_server

        from tenure.observe.metrics import registry_for

        start_http_server(
            metrics_port, metrics_host, registry=registry_for(store, settings.channels)
        )
        err.print(f"metrics on http://{metrics_host}:{metrics_port}/metrics")
    if once:
        counts = _dispatch_once(settings, store)
        out.print(", ".join(f"{k}: {v:,}" for k, v in sorted(counts.items())) or "nothing to do")
        return

    def tick(counts: Counter[str]) -> None:
        if counts:
            err.print(", ".join(f"{k}: {v:,}" for k, v in sorted(counts.items())))

    live = LiveWorker(settings, store, on_tick=tick)
    temporal = live.start()
    err.print(f"worker running on {temporal.address} (web UI {temporal.ui or '-'}); Ctrl-C to stop")
    try:
        live.wait()
    except KeyboardInterrupt:
        err.print("stopping")
    finally:
        live.stop()
    if live.error is not None:
        raise fail(live.error)


@journeys_app.command("list")
def journeys_list(
    status: Annotated[
        str | None,
        typer.Option(help="pending, running, completed or failed."),
    ] = None,
    customer: Annotated[str | None, typer.Option(help="Only this customer's journeys.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Journeys, newest first, with their current step and outcome."""
    if status is not None and status not in ("pending", "running", "completed", "failed"):
        raise fail(
            ValueError(f"--status must be pending, running, completed or failed, not {status!r}")
        )
    rows = query(workspace, lambda c: acts.journeys(c, status, customer, limit))
    columns: dict[str, Column] = {
        "decision": "decision_id",
        "customer": "customer_id",
        "journey": "journey_id",
        "status": "status",
        "step": "step",
        "outcome": "outcome",
        "updated": lambda r: _time(r["updated_at"]),
    }
    render(
        [{k: v for k, v in r.items() if k != "state"} for r in rows],
        as_json,
        table_of(rows, columns, f"journeys ({len(rows)})"),
        *([] if rows else [NO_JOURNEYS]),
    )


@journeys_app.command("show")
def journeys_show(
    decision_id: str, workspace: WorkspaceDir = None, as_json: JsonFlag = False
) -> None:
    """One journey: current step, what it waits for, its history, and its Temporal UI page."""
    row = query(workspace, lambda c: acts.journey(c, decision_id))
    if row is None:
        raise InputError(f"no journey {decision_id!r} (see `tenure journeys list`)")
    link = workflow_url(decision_id)
    state = row.get("state") or {}
    lines = [
        f"[bold]{plain(decision_id)}[/bold]  {row['journey_id']} for {plain(row['customer_id'])}",
        f"status {row['status']}, step {row['step'] or '-'}, outcome {row['outcome'] or '-'}",
    ]
    pause = state.get("pause")
    if pause:
        what = ", ".join(pause.get("events") or []) or pause.get("task") or "its start time"
        until = time.strftime("%Y-%m-%d %H:%M", time.gmtime(pause["until"]))
        lines.append(f"waiting for {what} until {until} UTC")
    steps: dict[str, Column] = {"at": lambda h: h["at"][:19], "step": "step", "what": "what"}
    history = table_of(state.get("history", []), steps, "history")
    ui = [f"Temporal UI: {link}"] if link else []
    render({**row, "temporal_ui": link}, as_json, *lines, history, *ui)


@tasks_app.command("list")
def tasks_list(
    status: Annotated[str, typer.Option(help="open, resolved, or all.")] = "open",
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Tasks waiting for a person (oldest first)."""
    chosen = None if status == "all" else status
    rows = query(workspace, lambda c: acts.tasks(c, chosen, queue, limit))
    columns: dict[str, Column] = {
        "task": "task_id",
        "customer": "customer_id",
        "queue": "queue",
        "reason": "reason",
        "due": lambda r: _time(r["due_at"]),
        "status": "status",
    }
    render(rows, as_json, table_of(rows, columns, f"tasks: {status} ({len(rows)})"))


@tasks_app.command("resolve")
def tasks_resolve(
    task_id: str,
    resolution: Annotated[str, typer.Option(help="What happened, e.g. saved or lost.")],
    by: Annotated[str, typer.Option("--by", help="Who resolved it.")],
    workspace: WorkspaceDir = None,
) -> None:
    """Resolve a task; the journey waiting on it continues (through the outbox and the worker)."""
    from tenure.services.tasks import resolve_task

    _, store = open_workspace(workspace)
    row = resolve_task(store, task_id, resolution, by, time.time())
    out.print(f"resolved {task_id} as {row['resolution']!r} by {row['resolved_by']}")


@dlq_app.command("list")
def dlq_list(
    held: Annotated[bool, typer.Option(help="Also list messages held by an open circuit.")] = True,
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Dead letters (and held messages), with each channel's circuit."""

    def read(conn: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        states = ["dead", "held"] if held else ["dead"]
        return acts.deliveries(conn, states, limit=10_000), acts.channel_states(conn)

    rows, channels = query(workspace, read)
    letters: dict[str, Column] = {
        "key": "key",
        "channel": "channel",
        "status": "status",
        "attempts": "attempts",
        "last error": lambda r: (r["last_error"] or "-")[:80],
        "since": lambda r: _time(r["updated_at"]),
    }
    circuits: dict[str, Column] = {
        "channel": "channel",
        "circuit": "circuit",
        "failed attempts in a row": "failures",
        "opened": lambda c: _time(c["opened_at"]),
    }
    render(
        {"deliveries": rows, "channels": channels},
        as_json,
        table_of(rows, letters, f"dead letters and held messages ({len(rows)})"),
        table_of(channels, circuits, "channels"),
    )


@dlq_app.command("retry")
def dlq_retry(
    keys: Annotated[list[str] | None, typer.Argument(help="Keys to retry (default: all).")] = None,
    workspace: WorkspaceDir = None,
) -> None:
    """Deliver dead letters again (through an open circuit: this is the operator's trial)."""
    from tenure.runtime.worker import courier_for

    settings, store = open_workspace(workspace)
    courier = courier_for(store, settings.workspace, settings.channels)
    receipts = courier.retry_dead(keys or None)
    if not receipts:
        out.print("no dead letters" + (" with those keys" if keys else ""))
        return
    counts = Counter(r.status for r in receipts)
    out.print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    if counts.get("dead"):
        raise typer.Exit(1)


@templates_app.command("preview")
def templates_preview(
    name: str,
    customer: Annotated[str, typer.Option(help="The customer it is written to.")],
    channel: Annotated[str, typer.Option(help="The channel (its templates, its type).")] = "email",
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Render a template for a customer as it would go out now; say which file each part came
    from. Nothing is sent or recorded."""
    import datetime as dt

    from tenure.channels.adapters import ChannelSettings, Message
    from tenure.channels.messages import step_payload
    from tenure.runtime.worker import letters_for
    from tenure.store.db import Store
    from tenure.workspace import Workspace

    ws = Workspace.open(workspace)
    message = Message(
        "preview", "d-preview", customer, channel, name, step_payload(ws.journeys, name)
    )
    settings = ws.channels.get(channel) or ChannelSettings()
    store = Store(ws.database_url)
    try:
        shown = letters_for(ws.root).preview(store, message, settings, dt.datetime.now(dt.UTC))
    finally:
        store.close()
    rendered = shown.rendered
    data = {
        "template": rendered.name,
        "channel": channel,
        "customer_id": customer,
        "locale": shown.locale,
        "to": shown.to,
        "unsubscribe_url": shown.unsubscribe_url,
        "parts": {
            part: {"file": str(rendered.sources[part]), "text": text}
            for part, text in rendered.parts.items()
        },
    }
    if as_json:
        render(data, as_json)
        return
    out.print(f"template {plain(rendered.name)} on {plain(channel)} for {plain(customer)}")
    out.print(f"  locale {plain(shown.locale or '-')}, to {plain(shown.to)}")
    out.print(f"  unsubscribe link {plain(shown.unsubscribe_url)}", soft_wrap=True)
    for part, text in rendered.parts.items():
        out.print(f"\n[bold]{part}[/bold] from {plain(rendered.sources[part])}", soft_wrap=True)
        # As it would go out: no markup, no wrapping; control characters made visible.
        shown_text = "".join(
            c if c.isprintable() or c == "\n" else f"\\u{ord(c):04x}" for c in text
        )
        out.print(shown_text, markup=False, highlight=False, soft_wrap=True)

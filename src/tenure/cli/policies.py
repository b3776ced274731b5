"""Policies: `policy validate|add|list|promote|schema|test|diff`."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tenure.cli.shell import (
    DEMO_BATCH_SIZE,
    Column,
    JsonFlag,
    WorkspaceDir,
    dump,
    err,
    open_workspace,
    out,
    plain,
    policy_app,
    query,
    render,
    table_of,
)
from tenure.config import DEFAULT_WORKSPACE, resolve
from tenure.policy.decide import DEFAULT_GUARDRAILS
from tenure.policy.model import Policy, load_policy
from tenure.runtime import ingest
from tenure.runtime.engine import Engine
from tenure.workspace import Workspace


def checked_policy(path: Path, workspace: Path | None) -> tuple[Policy, int]:
    """A policy file, refused unless every action's journey exists and every message it sends
    renders with the workspace's templates (built-in ones without a workspace); with the count
    of template renderings checked."""
    from tenure.channels.messages import Templates, check_policy
    from tenure.journeys.library import JourneyLibrary

    policy = load_policy(path)
    named = workspace or os.environ.get("TENURE_WORKSPACE")
    if named is None and not DEFAULT_WORKSPACE.is_dir():
        # No workspace here: check against what is built in, and make no directory.
        return policy, check_policy(policy, JourneyLibrary(), Templates(), {})
    ws = Workspace.open(workspace)
    return policy, check_policy(policy, ws.journeys, Templates.of(ws.root), ws.channels)


@policy_app.command("validate")
def policy_validate(path: Path, workspace: WorkspaceDir = None) -> None:
    """Check a policy file (its journeys and message templates against the workspace's); print
    its id, version (content hash) and actions."""
    p, templates = checked_policy(path, workspace)
    out.print(f"{p.id} ({p.label or 'no label'}) version {p.content_hash[:12]}: valid")
    out.print(f"  templates: {templates} rendered")
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

    policy, _ = checked_policy(path, workspace)
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
        table.add_row(plain(r.name), verdict, plain(str(r.expected)), plain(str(got)))
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

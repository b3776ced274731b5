"""What the workspace holds and proves: events schema, audit verify/replay, customers, decisions,
rejects and the lift report."""

from __future__ import annotations

from itertools import groupby
from typing import Annotated, Any

import typer
from rich.table import Table

from tenure.cli.shell import (
    Column,
    JsonFlag,
    WorkspaceDir,
    audit_app,
    customers_app,
    decisions_app,
    dump,
    err,
    events_app,
    fail,
    open_workspace,
    plain,
    query,
    rejects_app,
    render,
    report_app,
    table_of,
)
from tenure.config import resolve
from tenure.errors import AuditError, TenureError
from tenure.events.envelope import json_schema
from tenure.policy.model import parse_policy
from tenure.store import queries


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
            f"[red]audit chain broken[/red] at record {broken.seq}: {plain(broken.problem)} "
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
        f"{plain(decision_id)}: replay {'identical' if same else 'DIFFERS'} "
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
        f"[bold]{plain(customer_id)}[/bold]  as of {features.as_of}  plan={features.plan} "
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
            table.add_row(key, plain(str(value)))
    render(view, as_json, *lines, table, _decision_table(view["decisions"], one_customer=True))


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
        f"erased {plain(customer_id)}: {fields}; {done['events_redacted']} event(s) redacted, "
        f"{done['rejects_blanked']} rejected line(s) blanked, "
        f"{done['deliveries_scrubbed']} delivery payload(s) scrubbed",
    )


def _decision_table(rows: list[dict[str, Any]], one_customer: bool = False) -> Table:
    """Decisions as a table; `one_customer`: on that customer's own page (no id column)."""
    columns: dict[str, Column] = {
        "decided_at": lambda r: str(r["decided_at"])[:19],
        "decision_id": "decision_id",
        "customer_id": "customer_id",
        "status": "status",
        "action / guardrail": lambda r: r["action_id"] or r["guardrail"],
        "risk": lambda r: f"{r['risk']:.2f}",
    }
    if one_customer:
        del columns["customer_id"]
    table = table_of(rows, columns, "decisions" if rows else "decisions: none yet")
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
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 100,
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            "--run-id",
            help="Only this run's rejects: a run id (a run's summary names it) or 'latest' "
            "for the newest run.",
        ),
    ] = None,
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """List rejected input lines, the newest run's first, with their line number, reason, and
    the input's length and sha256 (its first 12 hex digits; --json gives all of it). Each run
    keeps its own rejects: a line rejected again shows its current reason under its run."""

    def read(conn: Any) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        if run is None:
            return None, queries.rejects(conn, limit=limit)
        found = queries.run_record(conn, None if run == "latest" else run)
        if found is None:
            return None, []
        return found, queries.rejects(conn, limit=limit, run_id=found["run_id"])

    chosen, rows = query(workspace, read)
    if run is not None and chosen is None:
        if run != "latest":
            err.print(f"[red]error:[/red] no run {plain(repr(run))} in this workspace")
            raise typer.Exit(1)
        render(rows, as_json, "no runs in this workspace yet")
        return
    if not rows:
        where = f"run {chosen['run_id']} ({plain(chosen['source'])})" if chosen else "any run"
        render(rows, as_json, f"no rejects in {where}")
        return
    render(rows, as_json, *_rejects_tables(rows))


def _rejects_tables(rows: list[dict[str, Any]]) -> list[Table]:
    """One table per run, newest run first (the rows come in that order)."""
    columns: dict[str, Column] = {
        "line": "line_no",
        "field": "field",
        "reason": lambda r: plain(r["reason"]),
        "raw": lambda r: plain(r["raw"] if len(r["raw"]) <= 60 else r["raw"][:57] + "..."),
        "bytes": lambda r: None if r["input_size"] is None else f"{r['input_size']:,}",
        "sha256": lambda r: (r["input_sha256"] or "")[:12],
    }
    tables = []
    for run_id, group in groupby(rows, key=lambda r: r["run_id"]):
        of_run = list(group)
        started = of_run[0]["run_started_at"]
        when = f", started {started:%Y-%m-%d %H:%M:%S} UTC" if started else ""
        title = f"run {run_id}{when}: {of_run[0]['source']}"
        tables.append(table_of(of_run, columns, title=plain(title)))
    return tables


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

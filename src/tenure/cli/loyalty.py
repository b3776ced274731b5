"""The loyalty commands: the ledger (balance, history, verify, expire, grants and adjustments
with four eyes), contracts and programmes, partners, tiers; thin, like the rest."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from tenure.cli.shell import (
    Column,
    JsonFlag,
    WorkspaceDir,
    app,
    dump,
    fail,
    out,
    plain,
    query,
    render,
    table_of,
)
from tenure.errors import TenureError
from tenure.loyalty.ledger import member_account, verify
from tenure.store import ledger
from tenure.times import iso_from_epoch
from tenure.workspace import load_contracts

ledger_app = typer.Typer(
    help="The points ledger: balances, history, invariants, grants and adjustments.",
    no_args_is_help=True,
)
app.add_typer(ledger_app, name="ledger")

Programme = Annotated[str, typer.Option(help="The loyalty programme.")]


@ledger_app.command("balance")
def ledger_balance(
    customer: str,
    programme: Programme = "default",
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """A member's points: posted, pending and available, and the lots they are in."""
    from tenure.services.loyalty import member_balance

    data = query(workspace, lambda c: member_balance(c, programme, customer))
    line = (
        f"[bold]{plain(data['account'])}[/bold]: {data['posted']:,} posted, "
        f"{data['available']:,} available ({data['pending_debits']:,} held by pending redemptions)"
    )
    lots: dict[str, Column] = {
        "lot": "lot",
        "remaining": lambda lot: f"{lot['remaining']:,}",
        "reserved": lambda lot: f"{lot['reserved']:,}",
        "expires": lambda lot: lot["expires_at"] or "never",
    }
    render(data, as_json, line, table_of(data["lots"], lots, "lots (soonest to expire first)"))


@ledger_app.command("history")
def ledger_history(
    customer: str,
    programme: Programme = "default",
    limit: Annotated[int, typer.Option(min=1)] = 100,
    transfers: Annotated[
        bool, typer.Option("--transfers", help="One line per ledger transfer instead.")
    ] = False,
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """A member's history, one line per business operation (a redemption with its phases: held,
    then posted or voided), the most recently active first."""
    if transfers:
        return _transfer_history(customer, programme, limit, workspace, as_json)
    from tenure.services.loyalty import member_history

    rows = query(workspace, lambda c: member_history(c, programme, customer, limit))

    def phases(r: Mapping[str, Any]) -> str:
        steps = r["phases"]
        if len(steps) == 1 and steps[0]["phase"] == "posted":
            return "posted"
        return " -> ".join(f"{ph['phase']} {(iso_from_epoch(ph['at']) or '')[:10]}" for ph in steps)

    columns: dict[str, Column] = {
        "at": lambda r: (iso_from_epoch(r["at"]) or "")[:19],
        "operation": "kind",
        "points": lambda r: f"{r['points']:+,}",
        "status": "status",
        "phases": phases,
        "other side": lambda r: ", ".join(r["other_side"]),
        "ref": "ref",
    }
    title = f"{member_account(programme, customer)} ({len(rows)} operations)"
    render(rows, as_json, table_of(rows, columns, title))


def _transfer_history(
    customer: str, programme: str, limit: int, workspace: Path | None, as_json: bool
) -> None:
    """A member's transfers, newest first."""
    account_id = member_account(programme, customer)
    rows = query(workspace, lambda c: ledger.history(c, account_id, limit))

    def ours(r: Mapping[str, Any]) -> bool:
        return bool(r["credit"] == account_id)

    columns: dict[str, Column] = {
        "at": lambda r: (iso_from_epoch(r["at"]) or "")[:19],
        "transfer": "transfer_id",
        "kind": "kind",
        "points": lambda r: f"{'+' if ours(r) else '-'}{r['amount']:,}",
        "status": "status",
        "other side": lambda r: r["debit"] if ours(r) else r["credit"],
        "ref": "ref",
    }
    render(rows, as_json, table_of(rows, columns, f"{account_id} ({len(rows)} transfers)"))


Reason = Annotated[str, typer.Option(help="Why (required; kept with it and in the audit).")]
By = Annotated[str, typer.Option("--by", help="Who asks for it.")]
Key = Annotated[
    str | None, typer.Option(help="An idempotency key: sent again, it answers the same one.")
]


def _grant_or_adjust(
    kind: str,
    customer: str,
    points: int,
    reason: str,
    by: str,
    programme: str,
    key: str | None,
    workspace: Path | None,
    as_json: bool,
) -> None:
    from tenure.cli.shell import open_workspace
    from tenure.services.grants import propose

    settings, store = open_workspace(workspace)
    terms = _terms(settings)
    row = propose(
        store, terms, kind, programme, customer, points, reason, by, dt.datetime.now(dt.UTC), key
    )
    what = f"{row['proposal_id']}: {row['points']:+,} points for {plain(row['customer_id'])}"
    line = (
        f"posted {what} ({row['programme']})"
        if row["status"] == "posted"
        else f"proposed {what}; above {row['threshold']:,} points it waits for a second "
        f"person: tenure ledger approve {row['proposal_id']} --by OTHER"
    )
    render(row, as_json, line)


@ledger_app.command("grant")
def ledger_grant(
    customer: str,
    points: Annotated[int, typer.Argument(min=1, help="Points to give.")],
    reason: Reason,
    by: By,
    programme: Programme = "default",
    key: Key = None,
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Give a member points (goodwill, service recovery); above the programme's four-eyes
    threshold it waits for someone else's approval."""
    _grant_or_adjust("grant", customer, points, reason, by, programme, key, workspace, as_json)


# A negative POINTS (`-200`) is an argument, not an unknown option.
@ledger_app.command("adjust", context_settings={"ignore_unknown_options": True})
def ledger_adjust(
    customer: str,
    points: Annotated[int, typer.Argument(help="Points to add, or take back when negative.")],
    reason: Reason,
    by: By,
    programme: Programme = "default",
    key: Key = None,
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Correct a member's points either way (-200 takes 200 back); above the programme's
    four-eyes threshold it waits for someone else's approval."""
    _grant_or_adjust("adjust", customer, points, reason, by, programme, key, workspace, as_json)


def _terms(settings: Any) -> Any:
    """The workspace's grant terms (services.grants.Terms) from its settings."""
    from tenure.services.grants import Terms

    return Terms(load_contracts(settings.workspace), settings.four_eyes_above)


@ledger_app.command("approve")
def ledger_approve(
    proposal_id: str,
    by: Annotated[str, typer.Option("--by", help="Who approves (not the author).")],
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Approve a waiting grant or adjustment (four eyes) and post it."""
    from tenure.cli.shell import open_workspace
    from tenure.services.grants import approve

    settings, store = open_workspace(workspace)
    terms = _terms(settings)
    row = approve(store, terms, proposal_id, by, dt.datetime.now(dt.UTC))
    line = (
        f"approved {proposal_id} by {plain(by)}: {row['points']:+,} points for "
        f"{plain(row['customer_id'])} posted"
    )
    render(row, as_json, line)


@ledger_app.command("reject")
def ledger_reject(
    proposal_id: str,
    reason: Reason,
    by: Annotated[str, typer.Option("--by", help="Who rejects it.")],
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Turn down a waiting grant or adjustment; nothing is posted."""
    from tenure.cli.shell import open_workspace
    from tenure.services.grants import reject

    _, store = open_workspace(workspace)
    row = reject(store, proposal_id, by, reason, dt.datetime.now(dt.UTC))
    render(row, as_json, f"rejected {proposal_id} by {plain(by)}")


@ledger_app.command("proposals")
def ledger_proposals(
    status: Annotated[
        str, typer.Option(help="proposed (waiting), posted, rejected, or all.")
    ] = "proposed",
    customer: Annotated[str | None, typer.Option(help="Only this member.")] = None,
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Grants and adjustments, newest first (by default those waiting for a second person)."""
    from tenure.services.grants import proposals

    wanted = None if status == "all" else status
    rows = query(workspace, lambda c: proposals(c, wanted, customer))
    columns: dict[str, Column] = {
        "id": "proposal_id",
        "kind": "kind",
        "member": "customer_id",
        "points": lambda r: f"{r['points']:+,}",
        "status": "status",
        "by": "author",
        "decided by": "decided_by",
        "reason": "reason",
    }
    render(rows, as_json, table_of(rows, columns, f"grants and adjustments ({len(rows)})"))


@ledger_app.command("verify")
def ledger_verify(workspace: WorkspaceDir = None, as_json: JsonFlag = False) -> None:
    """Check every ledger invariant; exit 1 naming the first breach."""

    def read(conn: Any) -> tuple[str | None, int, int]:
        book = ledger.whole_book(conn)
        breach = verify(book)
        if breach is None:
            for transfer_id, total in sorted(ledger.entry_sums(conn).items()):
                if total != 0:
                    breach = f"transfer {transfer_id}: its entry rows sum to {total}, not zero"
                    break
        return breach, len(book.transfers), len(book.accounts)

    from tenure.cli.shell import open_workspace

    _, store = open_workspace(workspace)
    with store.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # One snapshot for every read, so postings meanwhile cannot look like a breach.
            conn.execution_options(isolation_level="REPEATABLE READ")
        conn.execution_options(tenure_readonly=True)
        with conn.begin():
            breach, transfers, accounts = read(conn)
    verdict = (
        f"ledger ok: {transfers:,} transfers on {accounts:,} accounts, every invariant holds"
        if breach is None
        else f"[red]ledger broken[/red]: {plain(str(breach))}"
    )
    data = {"ok": breach is None, "breach": breach, "transfers": transfers, "accounts": accounts}
    render(data, as_json, verdict)
    if breach is not None:
        raise typer.Exit(1)


contract_app = typer.Typer(
    help="OEM contracts and own-brand programmes: earn rules, co-funding, caps, expiry.",
    no_args_is_help=True,
)
app.add_typer(contract_app, name="contract")


@contract_app.command("validate")
def contract_validate(path: Path) -> None:
    """Check a contract or own-brand programme file; exit 2 naming what is wrong."""
    from tenure.loyalty.contracts import load_terms

    contract = load_terms(path)
    parties = (
        f"brand {contract.oem}"
        if contract.own_brand
        else f"OEM {contract.oem}, {len(contract.dealers)} dealer(s)"
    )
    what = "programme" if contract.own_brand else "contract"
    out.print(
        f"{path}: {what} {contract.id!r} is valid ({len(contract.versions)} version(s), {parties})"
    )


@contract_app.command("list")
def contract_list(workspace: WorkspaceDir = None, as_json: JsonFlag = False) -> None:
    """The workspace's contracts (`<workspace>/contracts/*.yaml`) and own-brand programmes
    (`<workspace>/programmes/*.yaml`)."""
    from tenure.config import resolve

    contracts = load_contracts(resolve(workspace).workspace)
    rows = [
        {
            "id": c.id,
            "kind": "own-brand" if c.own_brand else "contract",
            "programme": c.programme,
            "oem": c.oem,
            "dealers": c.dealers,
            "versions": [v.effective_from.isoformat() for v in c.versions],
        }
        for c in contracts
    ]
    columns: dict[str, Column] = {
        "id": "id",
        "kind": "kind",
        "programme": "programme",
        "oem / brand": "oem",
        "dealers": lambda r: ", ".join(r["dealers"]),
        "versions from": lambda r: ", ".join(v[:10] for v in r["versions"]),
    }
    render(rows, as_json, table_of(rows, columns, f"contracts ({len(rows)})"))


@contract_app.command("show")
def contract_show(contract_id: str, workspace: WorkspaceDir = None) -> None:
    """One contract as JSON: every version's earn rules, funding, caps, catalogue, sharing."""
    from tenure.config import resolve

    contracts = load_contracts(resolve(workspace).workspace)
    found = next((c for c in contracts if c.id == contract_id), None)
    if found is None:
        known = ", ".join(c.id for c in contracts) or "none"
        raise fail(TenureError(f"no contract {contract_id!r} in the workspace (known: {known})"))
    dump(found.model_dump(mode="json"))


partner_app = typer.Typer(help="Partner statements and settlements.", no_args_is_help=True)
app.add_typer(partner_app, name="partner")


def _as_of(value: str | None) -> dt.datetime:
    """`--as-of`: an aware ISO 8601 time (a scheduled run must not guess the zone), or now."""
    try:
        when = dt.datetime.fromisoformat(value) if value else dt.datetime.now(dt.UTC)
    except ValueError:
        raise fail(TenureError(f"--as-of must be an ISO 8601 time, not {value!r}")) from None
    if when.tzinfo is None:
        raise fail(TenureError("--as-of needs a time zone (e.g. 2026-04-01T00:00:00Z)"))
    return when


def _period(value: str) -> str:
    try:
        dt.datetime.strptime(value, "%Y-%m")
    except ValueError:
        raise fail(TenureError(f"--period must look like 2026-03, not {value!r}")) from None
    return value


@partner_app.command("reconcile")
def partner_reconcile(
    partner: Annotated[str, typer.Option(help="The partner whose statement this is.")],
    statement: Annotated[Path, typer.Option(help="CSV with columns reference, points.")],
    period: Annotated[str, typer.Option(help="YYYY-MM, by event time.")],
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Compare a partner's statement with the points the ledger says it funded; exit 1 on any
    difference (missing on either side, points that differ)."""
    from tenure.services.loyalty import reconciliation

    period = _period(period)
    text = statement.read_text(encoding="utf-8")
    data = query(workspace, lambda c: reconciliation(c, partner, period, text, str(statement)))
    lines = [f"{plain(partner)} {period}: {data['matched']:,} lines match"]
    lines += [
        f"  not in the ledger: {plain(x['reference'])} ({x['points']} points, line {x['line']})"
        for x in data["missing_in_ledger"]
    ]
    lines += [
        f"  not on the statement: {plain(x['reference'])} ({x['points']} points)"
        for x in data["missing_in_statement"]
    ]
    lines += [
        f"  points differ: {plain(x['reference'])} statement {x['statement_points']}, "
        f"ledger {x['ledger_points']}"
        for x in data["mismatches"]
    ]
    render(data, as_json, *lines)
    if not data["clean"]:
        raise typer.Exit(1)


@partner_app.command("settlement")
def partner_settlement(
    period: Annotated[str, typer.Option(help="YYYY-MM, by event time.")],
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """What each funder owes for the period: funded points x the contract's point value."""
    from tenure.config import resolve
    from tenure.services.loyalty import settlement

    period = _period(period)
    contracts = load_contracts(resolve(workspace).workspace)
    rows = query(workspace, lambda c: settlement(c, contracts, period))
    columns: dict[str, Column] = {
        "contract": "contract",
        "funder": "funder",
        "points": lambda r: f"{r['points']:,}",
        "point value": "point_value",
        "owed": lambda r: f"{r['owed']:,.2f}",
    }
    render(rows, as_json, table_of(rows, columns, f"settlement {period}"))


tiers_app = typer.Typer(help="Loyalty tiers.", no_args_is_help=True)
app.add_typer(tiers_app, name="tiers")


@tiers_app.command("recalc")
def tiers_recalc(
    as_of: Annotated[
        str | None, typer.Option(help="Evaluate as of this time (ISO 8601; default now).")
    ] = None,
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """The scheduled run: re-evaluate every member's tier (upgrades, grace periods, downgrades)."""
    from tenure.cli.shell import open_workspace
    from tenure.services.loyalty import recalc_all

    when = _as_of(as_of)
    settings, store = open_workspace(workspace)
    if not settings.tiers:
        raise TenureError("no programme has tiers: set programmes.NAME.tiers in tenure.yaml")
    changes = recalc_all(store, settings.tiers, load_contracts(settings.workspace), when)
    rows = [
        {"programme": p, "customer_id": c, "from": ch.before, "to": ch.after, "reason": ch.reason}
        for p, c, ch in changes
    ]
    lines = [f"{len(rows)} tier change(s) as of {when.isoformat()}"]
    lines += [
        f"  {r['programme']}/{plain(r['customer_id'])}: {r['from']} -> {r['to']} ({r['reason']})"
        for r in rows
    ]
    render(rows, as_json, *lines)


@partner_app.command("adjust")
def partner_adjust(
    partner: Annotated[str, typer.Option(help="The partner the disputed line is about.")],
    period: Annotated[str, typer.Option(help="YYYY-MM.")],
    reference: Annotated[str, typer.Option(help="The statement line's reference.")],
    points: Annotated[int, typer.Option(help="Points the partner funds more (negative: less).")],
    reason: Annotated[str, typer.Option(help="Why (the dispute).")],
    by: Annotated[str, typer.Option("--by", help="Who proposes it.")],
    workspace: WorkspaceDir = None,
) -> None:
    """Propose an adjustment for a disputed line; it posts when someone else approves it."""
    from tenure.cli.shell import open_workspace
    from tenure.services.loyalty import propose_adjustment

    period = _period(period)
    settings, store = open_workspace(workspace)
    adj = propose_adjustment(
        store,
        load_contracts(settings.workspace),
        partner,
        period,
        reference,
        points,
        reason,
        by,
        dt.datetime.now(dt.UTC),
    )
    out.print(f"proposed {adj}: {points:+,} points for {partner} on {reference}; awaiting approval")


@partner_app.command("approve")
def partner_approve(
    adjustment_id: str,
    by: Annotated[str, typer.Option("--by", help="Who approves (not the author).")],
    workspace: WorkspaceDir = None,
) -> None:
    """Approve an adjustment (four eyes) and post it to the ledger."""
    from tenure.cli.shell import open_workspace
    from tenure.services.loyalty import approve_adjustment

    _, store = open_workspace(workspace)
    row = approve_adjustment(store, adjustment_id, by, dt.datetime.now(dt.UTC))
    out.print(
        f"approved {adjustment_id} by {by}: {row['points']:+,} points for {row['partner']} posted"
    )


@partner_app.command("adjustments")
def partner_adjustments(
    partner: Annotated[str | None, typer.Option(help="Only this partner.")] = None,
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Adjustments, proposed and approved, newest first."""
    from tenure.services.loyalty import adjustments

    rows = query(workspace, lambda c: adjustments(c, partner))
    columns: dict[str, Column] = {
        "id": "adjustment_id",
        "partner": "partner",
        "period": "period",
        "reference": "reference",
        "points": lambda r: f"{r['points']:+,}",
        "status": "status",
        "by": "author",
        "approved by": "approved_by",
    }
    render(rows, as_json, table_of(rows, columns, f"adjustments ({len(rows)})"))


@ledger_app.command("expire")
def ledger_expire(
    as_of: Annotated[str | None, typer.Option(help="ISO 8601 time (default now).")] = None,
    workspace: WorkspaceDir = None,
    as_json: JsonFlag = False,
) -> None:
    """The scheduled run: expire lapsed lots to breakage and void holds past their timeout.

    Safe to run as often as you like: each expiry and each void posts once.
    """
    from tenure.cli.shell import open_workspace
    from tenure.services.loyalty import expire_run

    when = _as_of(as_of)
    _, store = open_workspace(workspace)
    counts = expire_run(store, when)
    render(
        counts,
        as_json,
        f"{counts['lots_expired']:,} lot(s) expired ({counts['points_expired']:,} points to "
        f"breakage), {counts['holds_voided']:,} hold(s) past their timeout voided",
    )

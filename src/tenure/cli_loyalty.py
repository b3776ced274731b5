"""The loyalty ledger's commands: `ledger balance|history|verify`; thin, like the rest."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer
from rich.table import Table

from tenure.cli import JsonFlag, Workspace, _dump, _fail, _query, app, out
from tenure.errors import TenureError
from tenure.loyalty.ledger import member_account, verify
from tenure.store import ledger

ledger_app = typer.Typer(
    help="The points ledger: balances, history, invariants.", no_args_is_help=True
)
app.add_typer(ledger_app, name="ledger")

Programme = Annotated[str, typer.Option(help="The loyalty programme.")]


@ledger_app.command("balance")
def ledger_balance(
    customer: str,
    programme: Programme = "default",
    workspace: Workspace = None,
    as_json: JsonFlag = False,
) -> None:
    """A member's points: posted, pending and available, and the lots they are in."""
    account_id = member_account(programme, customer)

    def read(conn: Any) -> dict[str, Any]:
        book = ledger.whole_book(conn)
        a = book.account(account_id)
        lots = [
            {
                "lot": lot.lot_id,
                "remaining": lot.remaining,
                "reserved": lot.reserved,
                "expires_at": _iso(lot.expires_at),
            }
            for lot in book.lots_of(account_id)
        ]
        return {
            "account": account_id,
            "posted": a.balance,
            "pending_debits": a.pending_dr,
            "pending_credits": a.pending_cr,
            "available": a.available,
            "lots": lots,
        }

    data = _query(workspace, read)
    if as_json:
        _dump(data)
        return
    out.print(
        f"[bold]{account_id}[/bold]: {data['posted']:,} posted, {data['available']:,} available "
        f"({data['pending_debits']:,} held by pending redemptions)"
    )
    table = Table(title="lots (soonest to expire first)", title_justify="left")
    for col in ("lot", "remaining", "reserved", "expires"):
        table.add_column(col)
    for lot in data["lots"]:
        table.add_row(
            lot["lot"],
            f"{lot['remaining']:,}",
            f"{lot['reserved']:,}",
            lot["expires_at"] or "never",
        )
    out.print(table)


def _iso(epoch: float | None) -> str | None:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat() if epoch is not None else None


@ledger_app.command("history")
def ledger_history(
    customer: str,
    programme: Programme = "default",
    limit: Annotated[int, typer.Option(min=1)] = 100,
    workspace: Workspace = None,
    as_json: JsonFlag = False,
) -> None:
    """A member's transfers, newest first."""
    account_id = member_account(programme, customer)
    rows = _query(workspace, lambda c: ledger.history(c, account_id, limit))
    if as_json:
        _dump(rows)
        return
    table = Table(title=f"{account_id} ({len(rows)} transfers)", title_justify="left")
    for col in ("at", "transfer", "kind", "points", "status", "other side", "ref"):
        table.add_column(col)
    for r in rows:
        sign = "+" if r["credit"] == account_id else "-"
        other = r["debit"] if sign == "+" else r["credit"]
        table.add_row(
            (_iso(r["at"]) or "")[:19],
            r["transfer_id"],
            r["kind"],
            f"{sign}{r['amount']:,}",
            r["status"],
            other,
            r["ref"] or "",
        )
    out.print(table)


@ledger_app.command("verify")
def ledger_verify(workspace: Workspace = None, as_json: JsonFlag = False) -> None:
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

    try:
        breach, transfers, accounts = _query(workspace, read)
    except TenureError as exc:
        raise _fail(exc) from None
    if as_json:
        _dump(
            {"ok": breach is None, "breach": breach, "transfers": transfers, "accounts": accounts}
        )
    elif breach is None:
        out.print(
            f"ledger ok: {transfers:,} transfers on {accounts:,} accounts, every invariant holds"
        )
    else:
        out.print(f"[red]ledger broken[/red]: {breach}")
    if breach is not None:
        raise typer.Exit(1)

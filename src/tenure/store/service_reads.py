"""Reads behind the JSON API: what an ingested batch decided and posted, whether the store
answers at all, and the reads a partner may make, which take the caller's `Scope`.

Partner isolation is a rule of these reads, not of each route: given a partner's scope, they
answer only that partner's rows (settlement: the rows it funds; adjustments: its own; a member's
ledger: the transfers of its own events and its own funding, never another funder's) and refuse
(`OutOfScope`) another partner's statement or customer. Staff roles read with `EVERYONE`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, not_, or_, select

from tenure.errors import TenureError
from tenure.loyalty.contracts import Contract
from tenure.loyalty.ledger import funder_account
from tenure.store import acts, queries, repo
from tenure.store import schema as t

FUNDER = funder_account("")  # the prefix of every funder's account


@dataclass(frozen=True)
class Scope:
    """Whose rows a read may answer: everyone's (`partner` None), or one partner's, which sees
    only the customer fields in `fields` (what its contract shares)."""

    partner: str | None = None
    fields: frozenset[str] = frozenset()

    def admits(self, partner: str | None) -> bool:
        """Whether rows of `partner` are within this scope."""
        return self.partner is None or partner == self.partner

    def shown(self, view: dict[str, Any]) -> dict[str, Any]:
        """A customer view cut to the fields this scope may see."""
        if self.partner is None:
            return view
        return {k: v for k, v in view.items() if k == "customer_id" or k in self.fields}


EVERYONE = Scope()


class OutOfScope(TenureError):
    """A read asked for rows outside its caller's scope (the API answers 403)."""


def ping(conn: Connection) -> None:
    """One trivial statement; raises when the store does not answer."""
    conn.execute(select(1))


def is_partner_customer(conn: Connection, customer_id: str, partner: str | None) -> bool:
    """Whether the customer has any event at this partner."""
    e = t.events.c
    found = conn.execute(
        select(e.event_id).where(e.customer_id == customer_id, e.partner_id == partner).limit(1)
    ).first()
    return found is not None


def decisions_triggered_by(conn: Connection, event_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The records of the non-shadow decisions these events triggered."""
    d = t.decisions.c
    query = select(d.record).where(d.trigger_event_id.in_(event_ids), d.mode != "shadow")
    return list(conn.execute(query).scalars().all())


def loyalty_result(conn: Connection, event_id: str) -> tuple[str, int, str | None] | None:
    """(result, points, detail) the ledger recorded for a loyalty event, or None."""
    r = t.loyalty_results.c
    row = conn.execute(select(r.result, r.points, r.detail).where(r.event_id == event_id)).first()
    return None if row is None else (row.result, row.points, row.detail)


def require_partner(scope: Scope, partner: str) -> None:
    """Refuse a read of another partner's statement, settlement or adjustments."""
    if not scope.admits(partner):
        raise OutOfScope(f"a token of {scope.partner} cannot act for {partner}")


def require_customer(
    conn: Connection, scope: Scope, customer_id: str, fields: Iterable[str] = ()
) -> None:
    """Refuse a partner a customer with no event at that partner, or a field its contract does
    not share."""
    if scope.partner is None:
        return
    if not is_partner_customer(conn, customer_id, scope.partner):
        raise OutOfScope(f"customer {customer_id!r} is not a customer of {scope.partner}")
    for field in fields:
        if field not in scope.fields:
            raise OutOfScope(f"{scope.partner}'s contract does not share {field!r} with it")


def _month(period: str) -> tuple[dt.datetime, dt.datetime]:
    """The first instant of a YYYY-MM period and of the month after it (UTC)."""
    year, month = (int(x) for x in period.split("-"))
    start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
    return start, dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=dt.UTC)


def _accrued(
    conn: Connection, scope: Scope, start: dt.datetime, end: dt.datetime
) -> Iterator[tuple[str, str, int]]:
    """(contract, funder, points) of the in-scope shares of accruals whose events fall in
    [start, end)."""
    a = t.loyalty_accruals.c
    query = select(a.contract_id, a.shares).where(a.occurred_at >= start, a.occurred_at < end)
    for contract_id, shares in conn.execute(query):
        for funder, points in shares.items():
            if scope.admits(funder):
                yield contract_id, funder, int(points)


def _clawed_back(
    conn: Connection, scope: Scope, start: dt.datetime, end: dt.datetime
) -> Iterator[tuple[str, int]]:
    """(funder, points) given back to in-scope funders by returns in [start, end): clawbacks
    credit the funder's account."""
    tr = t.ledger_transfers.c
    query = select(tr.credit, tr.amount).where(
        tr.kind == "clawback",
        tr.status == "posted",
        tr.at >= start.timestamp(),
        tr.at < end.timestamp(),
    )
    if scope.partner is not None:
        query = query.where(tr.credit == funder_account(scope.partner))
    for credit, amount in conn.execute(query):
        yield credit.removeprefix(FUNDER), int(amount)


def _moved(conn: Connection, scope: Scope, period: str) -> Iterator[tuple[str, str, int]]:
    """(partner, funder, points) of approved adjustments in the period, per in-scope side: an
    adjustment moves funding from the OEM (minus) to the partner (plus)."""
    pa = t.partner_adjustments.c
    query = select(pa.partner, pa.oem, pa.points).where(
        pa.period == period, pa.status == "approved"
    )
    if scope.partner is not None:
        query = query.where(or_(pa.partner == scope.partner, pa.oem == scope.partner))
    for partner, oem, points in conn.execute(query):
        for funder, signed in ((partner, int(points)), (oem, -int(points))):
            if scope.admits(funder):
                yield partner, funder, signed


def settlement(
    conn: Connection,
    contracts: Sequence[Contract],
    period: str,
    scope: Scope,
    partner: str | None = None,
) -> list[dict[str, Any]]:
    """Per contract and funder in scope: points funded in the period and the amount owed; a
    partner's scope answers only the rows it funds, never another funder's points or amounts.
    Of `partner` when given: the rows of its contracts and its own. (With `EVERYONE` and no
    partner, the same rows as `services.loyalty.settlement`.)"""
    if partner is not None:
        require_partner(scope, partner)
        covered = {c.id for c in contracts if c.covers(partner)}
        rows = settlement(conn, contracts, period, scope)
        return [r for r in rows if r["contract"] in covered or r["funder"] == partner]

    def contract_of(partner: str) -> str:
        return next((c.id for c in contracts if c.covers(partner)), "-")

    start, end = _month(period)
    totals: dict[tuple[str, str], int] = {}
    for contract_id, funder, points in _accrued(conn, scope, start, end):
        totals[(contract_id, funder)] = totals.get((contract_id, funder), 0) + points
    for funder, points in _clawed_back(conn, scope, start, end):
        key = (contract_of(funder), funder)
        totals[key] = totals.get(key, 0) - points
    for partner, funder, points in _moved(conn, scope, period):
        key = (contract_of(partner), funder)
        totals[key] = totals.get(key, 0) + points
    by_id = {c.id: c for c in contracts}
    rows = []
    for (contract_id, funder), points in sorted(totals.items()):
        value = by_id[contract_id].point_value if contract_id in by_id else None
        rows.append(
            {
                "contract": contract_id,
                "funder": funder,
                "period": period,
                "points": points,
                "point_value": value,
                "owed": round(points * value, 2) if value is not None else None,
            }
        )
    return rows


def adjustments(conn: Connection, scope: Scope, partner: str | None = None) -> list[dict[str, Any]]:
    """Adjustments, newest first (of `partner` when given); a partner's scope answers only those
    it is party to (as the partner or as the OEM)."""
    if partner is not None:
        require_partner(scope, partner)
    pa = t.partner_adjustments.c
    query = select(t.partner_adjustments).order_by(pa.created_at.desc())
    if partner:
        query = query.where(pa.partner == partner)
    if scope.partner is not None:
        query = query.where(or_(pa.partner == scope.partner, pa.oem == scope.partner))
    return repo.rows(conn, query)


def _member_transfers(scope: Scope, account_id: str, customer_id: str) -> Any:
    """The condition on ledger transfers a scope may see of a member's account: all of them, or
    for a partner those of its own events and its own funding, none touching another funder."""
    tr = t.ledger_transfers.c
    mine = or_(tr.debit == account_id, tr.credit == account_id)
    if scope.partner is None:
        return mine
    e = t.events.c
    own_events = select(e.event_id).where(
        e.customer_id == customer_id, e.partner_id == scope.partner
    )
    funder = funder_account(scope.partner)
    other_funder = or_(
        and_(tr.debit.startswith(FUNDER, autoescape=True), tr.debit != funder),
        and_(tr.credit.startswith(FUNDER, autoescape=True), tr.credit != funder),
    )
    own = or_(tr.ref.in_(own_events), tr.debit == funder, tr.credit == funder)
    return and_(mine, own, not_(other_funder))


def member_history(
    conn: Connection, scope: Scope, account_id: str, customer_id: str, limit: int = 200
) -> list[dict[str, Any]]:
    """Transfers of a member's account the scope may see, newest first."""
    tr = t.ledger_transfers.c
    query = (
        select(t.ledger_transfers)
        .where(_member_transfers(scope, account_id, customer_id))
        .order_by(tr.at.desc(), tr.transfer_id.desc())
        .limit(limit)
    )
    return repo.rows(conn, query)


def member_lots(
    conn: Connection,
    scope: Scope,
    account_id: str,
    customer_id: str,
    lots: Sequence[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Of a member's lots (each made by the transfer it is named after), those the scope may
    see."""
    if scope.partner is None:
        return list(lots)
    tr = t.ledger_transfers.c
    query = select(tr.transfer_id).where(_member_transfers(scope, account_id, customer_id))
    seen = set(conn.execute(query).scalars())
    return [lot for lot in lots if lot["lot"] in seen]


# ---------------------------------------------------------------- pages (keyset, not offset)

Order = Sequence[tuple[Any, bool]]  # (column, descending) pairs, the last one unique


def _keyset(query: Any, order: Order, after: Sequence[Any] | None, limit: int) -> Any:
    """`query` in `order`, from just after the row whose key is `after` (its values for the
    order's columns), at most `limit` rows. Keyset rather than offset: a row inserted or
    removed before the key moves no other row from one page to the next."""
    if after is not None:
        steps = []
        for i, (column, descending) in enumerate(order):
            same = [c == v for (c, _), v in zip(order[:i], after, strict=False)]
            step = column < after[i] if descending else column > after[i]
            steps.append(and_(*same, step))
        query = query.where(or_(*steps))
    by = [column.desc() if descending else column.asc() for column, descending in order]
    return query.order_by(*by).limit(limit)


def decisions_page(
    conn: Connection,
    limit: int,
    after: Sequence[Any] | None = None,
    customer_id: str | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """Decisions newest first, after the key (decided_at, decision_id)."""
    d = t.decisions.c
    query = queries.decision_query(customer_id, status)
    order = ((d.decided_at, True), (d.decision_id, False))
    return queries.decision_rows(conn, _keyset(query, order, after, limit))


def journeys_page(
    conn: Connection,
    limit: int,
    after: Sequence[Any] | None = None,
    status: str | None = None,
    customer_id: str | None = None,
) -> list[dict[str, Any]]:
    """Journeys newest first, after the key (started_at, decision_id)."""
    j = t.journeys.c
    order = ((j.started_at, True), (j.decision_id, False))
    query = acts.journeys_query(status, customer_id)
    return repo.rows(conn, _keyset(query, order, after, limit))


def tasks_page(
    conn: Connection,
    limit: int,
    after: Sequence[Any] | None = None,
    status: str | None = "open",
    queue: str | None = None,
) -> list[dict[str, Any]]:
    """Tasks oldest first, after the key (created_at, task_id)."""
    c = t.tasks.c
    order = ((c.created_at, False), (c.task_id, False))
    return repo.rows(conn, _keyset(acts.tasks_query(status, queue), order, after, limit))


def policies_page(
    conn: Connection, limit: int, after: Sequence[Any] | None = None
) -> list[dict[str, Any]]:
    """Registered policy versions newest first, after the key (registered_at, policy_hash)."""
    p = t.policies.c
    columns = (p.policy_hash, p.policy_id, p.label, p.status, p.canary_percent, p.author)
    query = select(*columns, p.approved_by, p.registered_at, p.changed_at).where(
        p.author.is_not(None)
    )
    order = ((p.registered_at, True), (p.policy_hash, False))
    return repo.rows(conn, _keyset(query, order, after, limit))


def member_history_page(
    conn: Connection,
    scope: Scope,
    account_id: str,
    customer_id: str,
    limit: int,
    after: Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    """Transfers of a member's account the scope may see, newest first, after the key
    (at, transfer_id)."""
    tr = t.ledger_transfers.c
    query = select(t.ledger_transfers).where(_member_transfers(scope, account_id, customer_id))
    order = ((tr.at, True), (tr.transfer_id, True))
    return repo.rows(conn, _keyset(query, order, after, limit))


def adjustments_page(
    conn: Connection,
    scope: Scope,
    limit: int,
    after: Sequence[Any] | None = None,
    partner: str | None = None,
) -> list[dict[str, Any]]:
    """Adjustments newest first (of `partner` when given; a partner's scope: those it is party
    to), after the key (created_at, adjustment_id)."""
    if partner is not None:
        require_partner(scope, partner)
    pa = t.partner_adjustments.c
    query = select(t.partner_adjustments)
    if partner:
        query = query.where(pa.partner == partner)
    if scope.partner is not None:
        query = query.where(or_(pa.partner == scope.partner, pa.oem == scope.partner))
    order = ((pa.created_at, True), (pa.adjustment_id, False))
    return repo.rows(conn, _keyset(query, order, after, limit))


def tokens_page(
    conn: Connection, limit: int, after: Sequence[Any] | None = None
) -> list[dict[str, Any]]:
    """Tokens oldest first (never a digest), after the key (created_at, token_id)."""
    a = t.api_tokens.c
    query = select(a.token_id, a.label, a.role, a.partner, a.created_at, a.expires_at, a.revoked_at)
    order = ((a.created_at, False), (a.token_id, False))
    return repo.rows(conn, _keyset(query, order, after, limit))

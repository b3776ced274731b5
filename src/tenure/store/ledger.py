"""Posting the points ledger: lock what a batch touches, apply the pure rules, write the changes.

One transaction per batch of requests. The accounts the batch touches are created if new and
locked (PostgreSQL: `SELECT ... FOR UPDATE` in account-id order, so two writers never deadlock;
SQLite: the store's `BEGIN IMMEDIATE` already admits one writer at a time). Then the touched
slice of the ledger is loaded, `loyalty.ledger.post` decides, and only what changed is written:
so two processes posting to the same member can neither overdraw it nor lose a posting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update

from tenure.loyalty.history import RESOLVING, count_after, resolved_ids
from tenure.loyalty.ledger import Account, Book, Lot, Request, Transfer, entries, is_member, post
from tenure.store import schema as t
from tenure.store.db import Store
from tenure.store.repo import _among, _insert

_BALANCES = ("posted_dr", "posted_cr", "pending_dr", "pending_cr", "unbacked")


def _account(row: Any) -> Account:
    return Account(row.account_id, *(int(getattr(row, k)) for k in _BALANCES))


def _lot(row: Any) -> Lot:
    return Lot(
        row.lot_id,
        row.account_id,
        row.earned_at,
        row.expires_at,
        int(row.amount),
        int(row.remaining),
        int(row.reserved),
    )


def _transfer(row: Any) -> Transfer:
    return Transfer(
        row.transfer_id,
        row.kind,
        row.debit,
        row.credit,
        int(row.amount),
        row.at,
        row.status,
        row.payload_hash,
        row.pending_id or "",
        row.timeout_at,
        tuple((str(a), int(b)) for a, b in row.lots),
        int(row.unbacked),
        row.ref or "",
    )


def _lock_accounts(conn: Connection, ids: list[str], lock: bool) -> dict[str, Account]:
    if ids and lock:
        conn.execute(
            _insert(conn, t.ledger_accounts).on_conflict_do_nothing(),
            [{"account_id": a, **dict.fromkeys(_BALANCES, 0)} for a in ids],
        )
    ac = t.ledger_accounts.c
    query = (
        select(t.ledger_accounts).where(_among(conn, ac.account_id, ids)).order_by(ac.account_id)
    )
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return {row.account_id: _account(row) for row in conn.execute(query)}


def _transfers(conn: Connection, ids: list[str]) -> dict[str, Transfer]:
    tr = t.ledger_transfers.c
    query = select(t.ledger_transfers).where(_among(conn, tr.transfer_id, ids))
    return {row.transfer_id: _transfer(row) for row in conn.execute(query)}


def load(
    conn: Connection,
    requests: Sequence[Request],
    lock: bool = True,
    accounts: Sequence[str] = (),
) -> Book:
    """The slice of the ledger these requests (and these further `accounts`) can touch, with its
    accounts locked; a member's lots come with it.

    Accounts are locked before transfers are read, so a concurrent writer's transfer with the
    same id is seen (and answered `exists`) rather than collided with.
    """
    wanted = {a for r in requests for a in (r.debit, r.credit) if a} | set(accounts)
    locked = _lock_accounts(conn, sorted(wanted), lock)
    transfer_ids = sorted(
        {r.id for r in requests} | {r.pending_id for r in requests if r.pending_id}
    )
    transfers = _transfers(conn, transfer_ids)
    # Posting or voiding names only the pending transfer: lock its accounts too, then read the
    # transfers again, since a writer that held those locks may have just posted or voided it.
    more = sorted({a for x in transfers.values() for a in (x.debit, x.credit)} - set(locked))
    if more:
        locked.update(_lock_accounts(conn, more, lock))
        transfers = _transfers(conn, transfer_ids)
    members = [a for a in locked if is_member(a)]
    lc = t.ledger_lots.c
    lots = {
        row.lot_id: _lot(row)
        for row in conn.execute(
            select(t.ledger_lots).where(_among(conn, lc.account_id, members), lc.remaining > 0)
        )
    }
    return Book(locked, lots, transfers)


def save(conn: Connection, before: Book, after: Book) -> None:
    """Write what `post` changed: balances, lots, new transfers with their entries, statuses."""
    _save_accounts(conn, before, after)
    _save_transfers(conn, before, after)
    _save_lots(conn, before, after)


def _save_accounts(conn: Connection, before: Book, after: Book) -> None:
    changed = [a for k, a in after.accounts.items() if before.accounts.get(k) != a]
    fresh = [
        {"account_id": a.id, **dict.fromkeys(_BALANCES, 0)}
        for a in changed
        if a.id not in before.accounts
    ]
    if fresh:  # accounts the caller did not load (and so did not create): create them first
        conn.execute(_insert(conn, t.ledger_accounts).on_conflict_do_nothing(), fresh)
    if changed:  # one executemany for every changed account, not one statement each
        conn.execute(
            update(t.ledger_accounts)
            .where(t.ledger_accounts.c.account_id == bindparam("a_id"))
            .values({k: bindparam(f"a_{k}") for k in _BALANCES}),
            [{"a_id": a.id, **{f"a_{k}": getattr(a, k) for k in _BALANCES}} for a in changed],
        )


def _transfer_row(x: Transfer) -> dict[str, Any]:
    return {
        "transfer_id": x.id,
        "kind": x.kind,
        "debit": x.debit,
        "credit": x.credit,
        "amount": x.amount,
        "at": x.at,
        "status": x.status,
        "payload_hash": x.payload_hash,
        "pending_id": x.pending_id or None,
        "timeout_at": x.timeout_at,
        "lots": [list(p) for p in x.lots],
        "unbacked": x.unbacked,
        "ref": x.ref or None,
    }


def _save_transfers(conn: Connection, before: Book, after: Book) -> None:
    new = [x for k, x in after.transfers.items() if k not in before.transfers]
    if new:
        conn.execute(t.ledger_transfers.insert(), [_transfer_row(x) for x in new])
        rows = [
            {"transfer_id": x.id, "account_id": account, "amount": amount}
            for x in new
            for account, amount in entries(x)
        ]
        if rows:
            conn.execute(t.ledger_entries.insert(), rows)
    resolved = [
        {"t_id": k, "t_status": x.status}
        for k, x in after.transfers.items()
        if k in before.transfers and before.transfers[k].status != x.status
    ]
    if resolved:
        conn.execute(
            update(t.ledger_transfers)
            .where(t.ledger_transfers.c.transfer_id == bindparam("t_id"))
            .values(status=bindparam("t_status")),
            resolved,
        )


def _save_lots(conn: Connection, before: Book, after: Book) -> None:
    lots = [lot for k, lot in after.lots.items() if before.lots.get(k) != lot]
    if not lots:
        return
    stmt = _insert(conn, t.ledger_lots)
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.ledger_lots.c.lot_id],
        set_={"remaining": stmt.excluded.remaining, "reserved": stmt.excluded.reserved},
    )
    conn.execute(
        stmt,
        [
            {
                "lot_id": lot.lot_id,
                "account_id": lot.account,
                "earned_at": lot.earned_at,
                "expires_at": lot.expires_at,
                "amount": lot.amount,
                "remaining": lot.remaining,
                "reserved": lot.reserved,
            }
            for lot in lots
        ],
    )


def post_in(conn: Connection, requests: Sequence[Request], now: float) -> list[str]:
    """Post a batch inside the caller's transaction (so other writes commit with it)."""
    before = load(conn, requests)
    after, results = post(before, requests, now)
    save(conn, before, after)
    return results


def post_requests(store: Store, requests: Sequence[Request], now: float) -> list[str]:
    """Post a batch in one transaction; one result per request (`ok`, `exists` or a refusal)."""
    with store.transaction() as conn:
        return post_in(conn, requests, now)


def whole_book(conn: Connection) -> Book:
    """Every account, lot and transfer (for `ledger verify`)."""
    return Book(
        {row.account_id: _account(row) for row in conn.execute(select(t.ledger_accounts))},
        {row.lot_id: _lot(row) for row in conn.execute(select(t.ledger_lots))},
        {row.transfer_id: _transfer(row) for row in conn.execute(select(t.ledger_transfers))},
    )


def entry_sums(conn: Connection) -> dict[str, int]:
    """Per transfer, the sum of its entry rows (zero for every sound transfer)."""
    e = t.ledger_entries.c
    query = select(e.transfer_id, func.sum(e.amount)).group_by(e.transfer_id)
    return {tid: int(total) for tid, total in conn.execute(query)}


def history(conn: Connection, account_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """Transfers that debit or credit an account, newest first."""
    tr = t.ledger_transfers.c
    query = (
        select(t.ledger_transfers)
        .where((tr.debit == account_id) | (tr.credit == account_id))
        .order_by(tr.at.desc(), tr.transfer_id.desc())
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def operation_transfers(
    conn: Connection,
    account_id: str,
    operations: int,
    after: tuple[float, str] | None = None,
) -> list[Transfer]:
    """The transfers of the account's `operations` most recently active business operations
    (and perhaps a few more), or of those after `after` (the last activity and operation key a
    previous page ended at): read newest first until more operations than asked have shown up,
    then the rest of the instant reading stopped at, then the pending transfers that posts and
    voids among them resolve (a hold can be much older than its post)."""
    tr = t.ledger_transfers.c
    mine = (tr.debit == account_id) | (tr.credit == account_id)
    query = select(t.ledger_transfers).where(mine)
    if after is not None:
        # A hold resolved after the cursor belongs to an operation a previous page showed.
        later = select(tr.pending_id).where(
            mine, tr.kind.in_(RESOLVING), tr.at > after[0], tr.pending_id.is_not(None)
        )
        query = query.where(tr.at <= after[0], tr.transfer_id.not_in(later))
    base = query.order_by(tr.at.desc(), tr.transfer_id.desc())
    page = max(100, 4 * operations)
    found: dict[str, Transfer] = {}
    while True:
        rows = [_transfer(r) for r in conn.execute(base.offset(len(found)).limit(page))]
        found.update((x.id, x) for x in rows)
        if len(rows) < page:
            break
        if count_after(found.values(), after) > operations:
            last = rows[-1].at  # an operation's transfers at that instant may span two pages
            tail = conn.execute(base.where(tr.at == last))
            found.update((r.transfer_id, _transfer(r)) for r in tail)
            break
    missing = sorted(resolved_ids(found.values()) - set(found))
    return [*found.values(), *_transfers(conn, missing).values()]


def pending_ids_of(conn: Connection, account_id: str) -> list[str]:
    """Ids of pending transfers debiting an account (candidates; `load` re-reads them locked)."""
    tr = t.ledger_transfers.c
    query = select(tr.transfer_id).where(tr.debit == account_id, tr.status == "pending")
    return sorted(conn.execute(query).scalars())


def account(conn: Connection, account_id: str) -> Account:
    """One account as stored, read only (a new one has zero balances)."""
    ac = t.ledger_accounts.c
    row = conn.execute(select(t.ledger_accounts).where(ac.account_id == account_id)).first()
    return _account(row) if row is not None else Account(account_id)


def member_lots(conn: Connection, customer_id: str) -> list[Lot]:
    """The customer's lots with points free to move, in every programme, in draw order."""
    lots = t.ledger_lots.c
    suffix = ":" + customer_id
    rows = conn.execute(
        select(t.ledger_lots).where(
            lots.account_id.startswith("member:", autoescape=True),
            lots.account_id.endswith(suffix, autoescape=True),
            lots.remaining > lots.reserved,
        )
    )
    found = [_lot(r) for r in rows]
    # `endswith` also matches a longer id ending the same way: keep the exact account.
    mine = [x for x in found if x.account.partition(":")[2].partition(":")[2] == customer_id]
    return sorted(mine, key=lambda x: (x.account, *x.sort_key()))

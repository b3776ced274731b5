"""Accrual under contracts: events in, capped and co-funded ledger postings out, one transaction.

For a batch of events: those already accrued are skipped (an event earns once, however often it
is fed); the rest are taken in event-time order, each under the contract version in force at its
own time; the cap usage rows they touch are locked, so the caps hold across concurrent writers;
points beyond a cap are refused and recorded with the cap's reason; the granted points are posted
as linked transfers, one per funder, debiting each funder's account and crediting the member, in
lots that expire by the version's expiry rule. An own-brand programme is a contract too (funded
by the brand, covering events with no partner), so it earns, caps and expires the same way.

Loyalty events then hold, post and void redemptions, and returns claw back what their purchase
earned: all of it, or the share of it that came back (loyalty/returns.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from tenure.audit.chain import chain
from tenure.errors import InputError
from tenure.events.envelope import Event
from tenure.loyalty.contracts import (
    EARNING_TYPES,
    Accrual,
    Contract,
    Version,
    capped,
    earn,
    split,
)
from tenure.loyalty.history import operations
from tenure.loyalty.ledger import (
    OK_RESULTS,
    Book,
    Request,
    breakage_account,
    expiries_due,
    funder_account,
    holds_timed_out,
    holds_timed_out_transfers,
    member_account,
    post,
    redemption_account,
)
from tenure.loyalty.returns import allocate, asked_back, returned_share
from tenure.loyalty.tiers import Change, Standing, Tiers, evaluate
from tenure.store import ledger, repo, service_reads
from tenure.store import loyalty as loyalty_store
from tenure.store.db import Store
from tenure.store.loyalty import Connection, UsageKey
from tenure.store.service_reads import EVERYONE
from tenure.times import iso_from_epoch


@dataclass
class AccrualSummary:
    """What a batch earned."""

    events: int = 0
    accrued: int = 0
    points: int = 0
    refused_points: int = 0
    refusals: list[str] = field(default_factory=list)
    customers: set[str] = field(default_factory=set)  # who earned


@dataclass(frozen=True)
class _Plan:
    """One event's accrual before caps, with the cap usage keys it counts against."""

    event: Event
    contract: Contract
    version: Version
    accrual: Accrual
    contract_key: UsageKey
    customer_key: UsageKey


def _as_mapping(e: Event) -> dict[str, Any]:
    """The event as earn rules see it: its amount in the reporting currency (a contract's
    points per unit and point value are in it), the amount as sent kept beside."""
    payload = e.payload if isinstance(e.payload, dict) else msgspec.to_builtins(e.payload)
    rate = payload.get("__rate__")
    if rate is not None and payload.get("amount") is not None:
        payload = {
            **payload,
            "amount": payload["amount"] * rate,
            "amount_as_sent": payload["amount"],
            "currency_as_sent": payload.get("currency"),
        }
    return {
        "type": e.type,
        "event_id": e.event_id,
        "customer_id": e.customer_id,
        "occurred_at": e.occurred_at,
        "partner_id": e.partner_id,
        "payload": payload,
    }


def accrue(
    store: Store, contracts: Sequence[Contract], events: Sequence[Event], now: float
) -> AccrualSummary:
    """Accrue a batch of events under the contracts; one transaction."""
    with store.transaction() as conn:
        return accrue_in(conn, contracts, events, now)


def accrue_in(
    conn: Connection, contracts: Sequence[Contract], events: Sequence[Event], now: float
) -> AccrualSummary:
    """Accrue inside the caller's transaction (the pipeline's batch: events and points commit
    together, so a re-fed event is a duplicate and has already earned)."""
    summary = AccrualSummary()
    earning = [(c, c.earning_types()) for c in contracts]
    candidates = [e for e in events if _contract_for(earning, e) is not None]
    summary.events = len(candidates)
    if not candidates:
        return summary
    done = loyalty_store.accrued_event_ids(conn, [e.event_id for e in candidates])
    todo = sorted(
        (e for e in candidates if e.event_id not in done),
        key=lambda e: (e.occurred_at, e.event_id),
    )
    plans = _plans(earning, todo)
    used = loyalty_store.lock_usage(
        conn, [k for p in plans for k in (p.contract_key, p.customer_key)]
    )
    rows, requests = _grant(plans, used, summary)
    results = ledger.post_in(conn, requests, now)
    bad = [
        (r.id, res) for r, res in zip(requests, results, strict=True) if res not in ("ok", "exists")
    ]
    if bad:
        raise RuntimeError(f"ledger refused accruals: {bad[:3]}")  # rolls the batch back
    loyalty_store.save_usage(conn, used)
    loyalty_store.insert_accruals(conn, rows)
    return summary


_Earning = Sequence[tuple[Contract, frozenset[str]]]  # each contract with the types it earns on


def _contract_for(earning: _Earning, e: Event) -> Contract | None:
    """The first contract that covers where the event happened and earns on its type."""
    return next((c for c, types in earning if e.type in types and c.covers(e.partner_id)), None)


def _plans(earning: _Earning, todo: Sequence[Event]) -> list[_Plan]:
    """What each event earns under its contract's version, and the caps it counts against."""
    plans = []
    for e in todo:
        contract = _contract_for(earning, e)
        assert contract is not None
        accrual = earn(contract, _as_mapping(e))
        if accrual is None:
            continue
        version = contract.version_at(e.occurred_at)
        assert version is not None
        at = e.occurred_at.astimezone(dt.UTC)
        ckey = (contract.id, "*", version.contract_cap.key(at) if version.contract_cap else "-")
        ukey = (
            contract.id,
            e.customer_id,
            version.customer_cap.key(at) if version.customer_cap else "-",
        )
        plans.append(_Plan(e, contract, version, accrual, ckey, ukey))
    return plans


def _grant(
    plans: Sequence[_Plan], used: dict[UsageKey, int], summary: AccrualSummary
) -> tuple[list[dict[str, Any]], list[Request]]:
    """Apply the caps in order (counting into `used` and `summary`): accrual rows and postings."""
    rows, requests = [], []
    for plan in plans:
        e, accrual = plan.event, plan.accrual
        granted, reason = capped(
            accrual,
            plan.version,
            e.occurred_at.astimezone(dt.UTC),
            used[plan.contract_key],
            used[plan.customer_key],
        )
        used[plan.contract_key] += granted
        used[plan.customer_key] += granted
        shares = split(accrual.shares, accrual.points, granted, plan.contract.oem)
        requests += _funding_requests(plan.contract, plan.version, e, shares)
        rows.append(
            {
                "event_id": e.event_id,
                "customer_id": e.customer_id,
                # An own-brand programme's events have no partner: they happened at the brand.
                "partner_id": e.partner_id or plan.contract.oem,
                "occurred_at": e.occurred_at,
                "contract_id": plan.contract.id,
                "version_from": accrual.version_from,
                "rule_id": accrual.rule_id,
                "requested": accrual.points,
                "granted": granted,
                "refused_reason": reason,
                "shares": shares,
            }
        )
        summary.accrued += 1
        summary.customers.add(e.customer_id)
        summary.points += granted
        summary.refused_points += accrual.points - granted
        if reason:
            summary.refusals.append(f"{e.event_id}: {reason}")
    return rows, requests


def _funding_requests(
    contract: Contract, version: Version, e: Event, shares: dict[str, int]
) -> list[Request]:
    """One linked transfer per funder, from the funder's account to the member's, each a lot
    that expires by the version's rule."""
    member = member_account(contract.programme, e.customer_id)
    funders = sorted(shares)
    at = e.occurred_at.timestamp()
    expires = version.expiry.at(at)
    return [
        Request(
            f"accrue:{e.event_id}:{funder}",
            "accrue",
            funder_account(funder),
            member,
            shares[funder],
            at=at,
            expires_at=expires,
            linked=i < len(funders) - 1,
            ref=e.event_id,
        )
        for i, funder in enumerate(funders)
    ]


def _month(period: str) -> tuple[dt.datetime, dt.datetime]:
    """The first instant of a YYYY-MM period and of the month after it (UTC)."""
    year, month = (int(x) for x in period.split("-"))
    start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
    return start, dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=dt.UTC)


def funded_points(conn: Connection, partner: str, period: str) -> dict[str, int]:
    """Per event (reference), the points `partner` funded in `period` (YYYY-MM, by event time)."""
    start, end = _month(period)
    out = {}
    for event_id, shares in loyalty_store.shares_by_event(conn, start, end):
        if shares.get(partner):
            out[event_id] = int(shares[partner])
    for reference, points in loyalty_store.approved_points(conn, partner, period):
        out[reference] = out.get(reference, 0) + int(points)
    return out


def settlement(
    conn: Connection, contracts: Sequence[Contract], period: str
) -> list[dict[str, Any]]:
    """Per contract and funder: points funded in the period and the amount owed for them."""
    # One computation serves staff and partners: the scoped read with everyone in scope.
    return service_reads.settlement(conn, contracts, period, EVERYONE)


REDEMPTION_HOLD_S = 7 * 86_400.0  # a redemption not confirmed within a week is void
LOYALTY_TYPES = (
    "loyalty.redeem",
    "loyalty.redeem_confirmed",
    "loyalty.redeem_cancelled",
    "loyalty.return",
)


def redeem_in(
    conn: Connection, contracts: Sequence[Contract], events: Sequence[Event], now: float
) -> dict[str, int]:
    """Redemptions (held, then confirmed or cancelled) and returns (clawbacks) from events.

    Each event's outcome is recorded in `loyalty_results`; an event seen before is skipped.
    Counts by result.
    """
    todo = sorted(
        (e for e in events if e.type in LOYALTY_TYPES), key=lambda e: (e.occurred_at, e.event_id)
    )
    if not todo:
        return {}
    done = loyalty_store.result_event_ids(conn, [e.event_id for e in todo])
    counts: dict[str, int] = {}
    rows = []
    for e in todo:
        if e.event_id in done:
            continue
        p = msgspec.to_builtins(e.payload)
        if e.type == "loyalty.return":
            result, points, detail = _return(conn, contracts, e, p, now)
        else:
            requests, points, detail = _loyalty_requests(contracts, e, p)
            if not requests:
                # Nothing posted: refused when the request itself was wrong, else nothing to do.
                result = "refused" if detail and detail.startswith("item ") else "skipped"
            else:
                result = _posted(conn, requests, now)
        rows.append(
            {
                "event_id": e.event_id,
                "customer_id": e.customer_id,
                "type": e.type,
                "result": result,
                "points": points if result in ("ok", "exists") else 0,
                "detail": detail,
            }
        )
        counts[rows[-1]["result"]] = counts.get(rows[-1]["result"], 0) + 1
    loyalty_store.insert_results(conn, rows)
    return counts


def _catalogue_price(
    contracts: Sequence[Contract], programme: str, item: str | None, at: dt.datetime
) -> int | None:
    """An item's price in the programme's catalogues in force at `at` (None: not listed)."""
    if item is None:
        return None
    for c in contracts:
        version = c.version_at(at) if c.programme == programme else None
        for entry in version.catalogue if version else ():
            if entry.id == item:
                return entry.points
    return None


_Requests = tuple[list[Request], int, str | None]  # postings, the points they move, a detail


def _posted(conn: Connection, requests: Sequence[Request], now: float) -> str:
    """Post the requests; their result (the first refusal, if any)."""
    results = ledger.post_in(conn, requests, now)
    return next((x for x in results if x not in OK_RESULTS), results[0])


def _loyalty_requests(contracts: Sequence[Contract], e: Event, p: dict[str, Any]) -> _Requests:
    """The postings a redemption, or its confirmation or cancellation, asks for."""
    at = e.occurred_at.timestamp()
    programme = p.get("programme", "default")
    member = member_account(programme, e.customer_id)
    if e.type == "loyalty.redeem":
        return _redeem_requests(contracts, e, p, programme, member)
    if e.type in ("loyalty.redeem_confirmed", "loyalty.redeem_cancelled"):
        kind = "post" if e.type.endswith("confirmed") else "void"
        return (
            [
                Request(
                    f"{kind}:{p['redemption_id']}",
                    kind,
                    pending_id=f"redeem:{p['redemption_id']}",
                    at=at,
                    ref=e.event_id,
                )
            ],
            0,
            None,
        )
    raise AssertionError(f"not a redemption: {e.type}")


def _redeem_requests(
    contracts: Sequence[Contract], e: Event, p: dict[str, Any], programme: str, member: str
) -> _Requests:
    """A redemption: a hold on the member's points, at the catalogue's price if listed."""
    price = _catalogue_price(contracts, programme, p.get("item"), e.occurred_at)
    if price is not None and price != int(p["points"]):
        return (
            [],
            0,
            f"item {p['item']!r} costs {price} points in the catalogue, not {p['points']}",
        )
    hold = Request(
        f"redeem:{p['redemption_id']}",
        "redeem",
        member,
        redemption_account(programme),
        int(p["points"]),
        at=e.occurred_at.timestamp(),
        pending=True,
        timeout_s=REDEMPTION_HOLD_S,
        ref=e.event_id,
    )
    return [hold], int(p["points"]), p.get("item")


def _return(
    conn: Connection, contracts: Sequence[Contract], e: Event, p: dict[str, Any], now: float
) -> tuple[str, int, str | None]:
    """A return: claw back the share of its purchase's points that came back (all of them when
    it names no amount or items), by the contract's return policy, and record what has come
    back of the purchase so far. (result, points clawed back, detail)."""
    purchase = p["purchase_event_id"]
    row = loyalty_store.accrual(conn, purchase)
    if row is None or not row.granted:
        return "skipped", 0, f"purchase {purchase} earned no points"
    contract = next((c for c in contracts if c.id == row.contract_id), None)
    version = contract.version_at(row.occurred_at) if contract else None
    policy = version.returns if version else "within_balance"
    programme = contract.programme if contract else p.get("programme", "default")
    member = member_account(programme, row.customer_id)  # the points went to the purchaser
    # Lock the member and every funder at once (in id order, like every other posting), then
    # the purchase's row: two returns of one purchase go one after the other.
    book = ledger.load(conn, [], accounts=[member, *(funder_account(f) for f in row.shares)])
    row = loyalty_store.accrual(conn, purchase, lock=True)
    share = returned_share(
        loyalty_store.event_payload(conn, purchase) or {}, p.get("amount"), p.get("items")
    )
    before = float(row.returned or 0.0)
    if before >= 1.0:
        return "skipped", 0, f"purchase {purchase} has already come back in full"
    after, asked = asked_back(int(row.granted), before, share.share)
    clawed = {f: int(n) for f, n in (row.clawed or {}).items()}
    oem = contract.oem if contract else sorted(row.shares)[0]
    takes = _takes(book, row, policy, asked, clawed, member, oem)
    requests = [
        Request(
            f"return:{e.event_id}:{funder}",
            "clawback",
            member,
            funder_account(funder),
            points,
            at=e.occurred_at.timestamp(),
            lot_id=f"accrue:{purchase}:{funder}" if policy == "pending_only" else "",
            allow_negative=policy == "allow_negative",
            linked=i < len(takes) - 1,
            ref=e.event_id,
        )
        for i, (funder, points) in enumerate(sorted(takes.items()))
    ]
    result = _posted(conn, requests, now) if requests else "skipped"
    if result in OK_RESULTS or not requests:
        # The goods came back even when the balance could not pay: a later return of the same
        # purchase never asks for these points again.
        clawed = {f: clawed.get(f, 0) + takes.get(f, 0) for f in sorted({*clawed, *takes})}
        loyalty_store.record_return(conn, purchase, after, clawed)
    amount = sum(takes.values())
    if amount == asked == row.granted:
        return result, amount, None
    return (
        result,
        amount,
        (
            f"{share.measure}: {amount} of {asked} points clawed back ({policy}), "
            f"{sum(clawed.values())} of {row.granted} in all"
        ),
    )


def _takes(
    book: Book,
    row: Any,
    policy: str,
    asked: int,
    clawed: dict[str, int],
    member: str,
    oem: str,
) -> dict[str, int]:
    """The points to claw back from each funder under the return policy: as far as the balance
    allows, all asked (the balance may go negative), or only those still unspent in the
    purchase's own lots; split like the funding was, never more than a funder gave."""
    shares = {f: int(n) for f, n in row.shares.items()}
    if policy != "pending_only":
        available = max(0, book.account(member).available)
        points = asked if policy == "allow_negative" else min(asked, available)
        return allocate(shares, clawed, points, oem)
    takes = {}
    for funder, points in allocate(shares, clawed, asked, oem).items():
        lot = book.lots.get(f"accrue:{row.event_id}:{funder}")
        free = lot.free if lot is not None and lot.account == member else 0
        if min(points, free) > 0:
            takes[funder] = min(points, free)
    return takes


def _metric(
    conn: Connection,
    tiers: Tiers,
    contract_ids: Sequence[str],
    customer_ids: Sequence[str],
    now: dt.datetime,
) -> dict[str, float]:
    """Each customer's qualification metric as of `now`."""
    start = tiers.window_start(now)
    values = dict.fromkeys(customer_ids, 0.0)
    if tiers.metric == "spend_rolling":
        spent = loyalty_store.spend_events(conn, customer_ids, EARNING_TYPES, start, now)
        for customer, payload in spent:
            values[customer] += float((payload or {}).get("amount") or 0.0)
        return values
    granted = loyalty_store.granted_by_customer(conn, customer_ids, contract_ids, start, now)
    for customer, points in granted:
        values[customer] += float(points)
    return values


def recalc_tiers_in(
    conn: Connection,
    programme: str,
    tiers: Tiers,
    contracts: Sequence[Contract],
    customer_ids: Sequence[str],
    now: dt.datetime,
) -> list[tuple[str, Change]]:
    """Re-evaluate these members' tiers; write changes and one audit record per change."""
    ids = sorted(set(customer_ids))
    if not ids:
        return []
    # Taken first: tier recalculations (pipeline batches, the scheduled run) go one at a time,
    # so the same change is never written, and audited, twice.
    head_seq, head_hash = repo.lock_audit_head(conn)
    current = loyalty_store.standings(conn, programme, ids)
    values = _metric(conn, tiers, [c.id for c in contracts if c.programme == programme], ids, now)
    rows, changes = _tier_rows(programme, tiers, current, values, ids, now)
    loyalty_store.upsert_tiers(conn, rows)
    if changes:
        bodies = [
            {
                "kind": "tier",
                "programme": programme,
                "customer_id": cid,
                "from": c.before,
                "to": c.after,
                "reason": c.reason,
                "at": now.isoformat(),
            }
            for cid, c in changes
        ]
        records = chain(head_hash, head_seq + 1, bodies)
        repo.append_audit(conn, records, [("tier", f"{programme}:{cid}") for cid, _ in changes])
    return changes


def _tier_rows(
    programme: str,
    tiers: Tiers,
    current: Mapping[str, Standing],
    values: Mapping[str, float],
    ids: Sequence[str],
    now: dt.datetime,
) -> tuple[list[dict[str, Any]], list[tuple[str, Change]]]:
    """The standings to write (new or moved) and the tier changes among them."""
    changes: list[tuple[str, Change]] = []
    rows = []
    for cid in ids:
        before = current.get(cid, Standing())
        after, change = evaluate(tiers, before, values[cid], now)
        if after == before and cid in current:
            continue
        rows.append(
            {
                "programme": programme,
                "customer_id": cid,
                "tier": after.tier,
                "below_since": after.below_since,
                "changed_at": now if change else None,
            }
        )
        if change:
            changes.append((cid, change))
    return rows, changes


def recalc_all(
    store: Store,
    tiers_by_programme: Mapping[str, Tiers],
    contracts: Sequence[Contract],
    now: dt.datetime,
) -> list[tuple[str, str, Change]]:
    """The scheduled run: every member with points or a tier, in every programme with tiers."""
    out = []
    with store.transaction() as conn:
        for programme, tiers in sorted(tiers_by_programme.items()):
            ids = loyalty_store.accrued_customers(conn)
            ids |= loyalty_store.tiered_customers(conn, programme)
            for cid, change in recalc_tiers_in(conn, programme, tiers, contracts, sorted(ids), now):
                out.append((programme, cid, change))
    return out


def propose_adjustment(
    store: Store,
    contracts: Sequence[Contract],
    partner: str,
    period: str,
    reference: str,
    points: int,
    reason: str,
    author: str,
    now: dt.datetime,
) -> str:
    """Record a dispute's adjustment; it posts only once someone else approves it."""
    if points == 0:
        raise InputError("--points must not be zero")
    if not reason.strip() or not author.strip():
        raise InputError("an adjustment needs --reason and --by")
    contract = next((c for c in contracts if c.covers(partner)), None)
    if contract is None:
        raise InputError(f"no contract in the workspace covers partner {partner!r}")
    adjustment_id = (
        "adj-"
        + hashlib.sha256(
            f"{partner}\x1f{period}\x1f{reference}\x1f{points}\x1f{now.isoformat()}".encode()
        ).hexdigest()[:16]
    )
    with store.transaction() as conn:
        loyalty_store.insert_adjustment(
            conn,
            {
                "adjustment_id": adjustment_id,
                "partner": partner,
                "oem": contract.oem,
                "period": period,
                "reference": reference,
                "points": points,
                "reason": reason,
                "author": author.strip(),
                "status": "proposed",
                "created_at": now,
            },
        )
    return adjustment_id


def approve_adjustment(
    store: Store, adjustment_id: str, approver: str, now: dt.datetime
) -> dict[str, Any]:
    """Approve and post an adjustment: four eyes, so never by its author; exactly once."""
    with store.transaction() as conn:
        row = loyalty_store.lock_adjustment(conn, adjustment_id)
        if row is None:
            raise InputError(f"no adjustment {adjustment_id!r} (see `tenure partner adjustments`)")
        if row.status != "proposed":
            raise InputError(
                f"adjustment {adjustment_id} is already {row.status} by {row.approved_by}"
            )
        if approver.strip().casefold() == row.author.strip().casefold():
            raise InputError(
                f"adjustment {adjustment_id} was proposed by {row.author}; "
                "someone else must approve it"
            )
        # The partner funds `points` more (or less) of the reference: it moves between the
        # partner's and the OEM's funder accounts.
        debit, credit = funder_account(row.partner), funder_account(row.oem)
        if row.points < 0:
            debit, credit = credit, debit
        (result,) = ledger.post_in(
            conn,
            [
                Request(
                    adjustment_id,
                    "adjust",
                    debit,
                    credit,
                    abs(int(row.points)),
                    at=now.timestamp(),
                    ref=row.reference,
                )
            ],
            now.timestamp(),
        )
        if result not in ("ok", "exists"):
            raise InputError(f"the ledger refused the adjustment: {result}")
        loyalty_store.approve_adjustment(conn, adjustment_id, approver, now)
        return {**row._asdict(), "status": "approved", "approved_by": approver}


def adjustments(conn: Connection, partner: str | None = None) -> list[dict[str, Any]]:
    """Adjustments, newest first."""
    return loyalty_store.adjustments(conn, partner)


def expire_run(store: Store, now: dt.datetime) -> dict[str, int]:
    """The scheduled expiry: timed-out holds voided, then lapsed lots to breakage. Idempotent.

    An unlocked scan finds the members with something due; each member's work is then redone
    from a locked slice of the ledger (the member, breakage, and the accounts its holds credit),
    so a posting that commits meanwhile is never overwritten.
    """
    at = now.timestamp()
    with store.reader() as conn:
        scan = ledger.whole_book(conn)
    members = sorted(
        {x.debit for x in holds_timed_out_transfers(scan, at)}
        | {
            lot.account
            for lot in scan.lots.values()
            if lot.expires_at is not None and lot.expires_at <= at and lot.free > 0
        }
    )
    done: list[tuple[Request, str]] = []
    for member in members:
        breakage = {member: breakage_account(member.split(":")[1])}
        with store.transaction() as conn:
            hints = [
                Request(f"timeout:{tid}", "void", pending_id=tid, at=at)
                for tid in ledger.pending_ids_of(conn, member)
            ]
            # Locked, with the pending transfers re-read under the lock.
            book = ledger.load(conn, hints, accounts=[member, breakage[member]])
            voids = holds_timed_out(book, at)
            voided, void_results = post(book, voids, at)
            expiries = expiries_due(voided, at, breakage)
            after, expiry_results = post(voided, expiries, at)
            ledger.save(conn, book, after)
        done += zip(voids, void_results, strict=True)
        done += zip(expiries, expiry_results, strict=True)
    ok = [r for r, res in done if res == "ok"]
    return {
        "holds_voided": sum(r.kind == "void" for r in ok),
        "lots_expired": sum(r.kind == "expire" for r in ok),
        "points_expired": sum(r.amount for r in ok if r.kind == "expire"),
    }


def member_balance(conn: Connection, programme: str, customer_id: str) -> dict[str, Any]:
    """A member's points: posted, pending and available, and the lots they are in (read only)."""
    account_id = member_account(programme, customer_id)
    book = ledger.load(conn, [], lock=False, accounts=[account_id])
    a = book.account(account_id)
    return {
        "account": account_id,
        "posted": a.balance,
        "pending_debits": a.pending_dr,
        "pending_credits": a.pending_cr,
        "available": a.available,
        "lots": [
            {
                "lot": lot.lot_id,
                "remaining": lot.remaining,
                "reserved": lot.reserved,
                "expires_at": iso_from_epoch(lot.expires_at),
            }
            for lot in book.lots_of(account_id)
        ],
    }


def member_history(
    conn: Connection,
    programme: str,
    customer_id: str,
    limit: int = 100,
    after: Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    """A member's ledger history, one line per business operation (an accrual, a redemption
    with its phases held and posted or voided, a return, a grant), most recently active first.

    Times are epoch seconds, as in the transfers. A page goes on from `after`, the (`last`,
    `operation`) of the previous page's last line: the keyset an API route pages by.
    """
    account_id = member_account(programme, customer_id)
    cursor = (float(after[0]), str(after[1])) if after is not None else None
    found = operations(ledger.operation_transfers(conn, account_id, limit, cursor), account_id)
    if cursor is not None:
        found = [op for op in found if (op.last, op.key) < cursor]
    return [
        {
            "operation": op.key,
            "kind": op.kind,
            "at": op.at,
            "last": op.last,
            "points": op.points,
            "net": op.net,
            "status": op.status,
            "phases": [
                {"phase": ph.name, "at": ph.at, "transfer_id": ph.transfer_id} for ph in op.phases
            ],
            "transfers": list(op.transfers),
            "other_side": list(op.counterparts),
            "ref": op.ref or None,
        }
        for op in found[:limit]
    ]


def reconciliation(
    conn: Connection, partner: str, period: str, statement: str, source: str
) -> dict[str, Any]:
    """A partner's statement (CSV text) against the points the ledger says it funded."""
    from tenure.loyalty.partners import parse_statement, reconcile

    lines = parse_statement(statement, source)
    report = reconcile(partner, period, lines, funded_points(conn, partner, period))
    return {
        "partner": partner,
        "period": period,
        "clean": report.clean,
        "matched": report.matched,
        "missing_in_ledger": [
            {"reference": x.reference, "points": x.points, "line": x.line_no}
            for x in report.missing_in_ledger
        ],
        "missing_in_statement": [
            {"reference": r, "points": p} for r, p in report.missing_in_statement
        ],
        "mismatches": [
            {
                "reference": m.reference,
                "statement_points": m.statement_points,
                "ledger_points": m.ledger_points,
            }
            for m in report.mismatches
        ],
    }


def move_points_in(conn: Connection, previous: str, survivor: str, at: float) -> int:
    """A merged id's free points, moved to the survivor's account in each programme, lot by
    lot with each lot's expiry (inside the caller's transaction). Returns the points moved."""
    requests = []
    for lot in ledger.member_lots(conn, previous):
        programme = lot.account.partition(":")[2].partition(":")[0]
        requests.append(
            Request(
                id=f"merge:{lot.lot_id}",
                kind="adjust",
                debit=lot.account,
                credit=member_account(programme, survivor),
                amount=lot.free,
                at=at,
                expires_at=lot.expires_at,
                ref=f"merge:{previous}:{survivor}",
            )
        )
    results = ledger.post_in(conn, requests, at)
    refused = [(r.id, x) for r, x in zip(requests, results, strict=True) if x not in OK_RESULTS]
    if refused:
        raise RuntimeError(f"ledger refused moving merged points: {refused[:3]}")  # rolls back
    return sum(r.amount for r in requests)

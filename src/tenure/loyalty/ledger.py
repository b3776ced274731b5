"""The points ledger's rules, pure: requests in, transfers and results out, nothing else touched.

Guarantees (each checked by `verify` and by the tests after every step):
1. A transfer is immutable once written; its two entries sum to zero.
2. An account's balances are the sums of its entries: posted and pending, debits and credits.
3. A pending transfer is posted or voided exactly once (or expires, which voids it).
4. A member account never goes below zero (available = posted credits - posted debits - pending
   debits) unless the request allows it.
5. A request id is used once: the same id and payload answers `exists` (treat it like `ok`); the
   same id with another payload is refused.
6. Lots: every accrual to a member is a lot with an expiry; debits consume the soonest-to-expire
   lots first; a lot's remaining points never go below zero; a member's lots minus the points
   debited beyond them (`unbacked`, only where a request allowed a negative balance) equal the
   member's posted balance. An accrual repays unbacked points before it makes a lot.

Rejection reasons, in order of precedence: `exists_with_different_payload`, `exists`,
`accounts_must_be_different`, `amount_must_be_positive`, `pending_transfer_not_found`,
`pending_transfer_not_pending` (already posted or voided), `pending_transfer_expired`,
`lot_not_found`, `exceeds_available`, `linked_event_failed`.

Written by hand: TigerBeetle has these semantics but is a server of its own; the lots, their
expiry and who funds each point are ours.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import orjson

Kind = Literal["accrue", "redeem", "expire", "clawback", "grant", "adjust", "post", "void"]
OK_RESULTS = ("ok", "exists")


def member_account(programme: str, customer_id: str) -> str:
    """The account of a member's points in a programme."""
    return f"member:{programme}:{customer_id}"


def funder_account(partner: str) -> str:
    """The liability account of whoever funds points (the OEM, a dealer)."""
    return f"funder:{partner}"


def redemption_account(programme: str) -> str:
    """Where redeemed points go."""
    return f"redemption:{programme}"


def breakage_account(programme: str) -> str:
    """Where expired points go."""
    return f"breakage:{programme}"


def goodwill_account(programme: str) -> str:
    """What the programme itself gives (goodwill grants) and takes back (corrections)."""
    return f"goodwill:{programme}"


def is_member(account_id: str) -> bool:
    """Member accounts hold points (credit-normal) and have a floor of zero."""
    return account_id.startswith("member:")


@dataclass(frozen=True)
class Account:
    """Balances in points; a member's balance is credits minus debits."""

    id: str
    posted_dr: int = 0
    posted_cr: int = 0
    pending_dr: int = 0
    pending_cr: int = 0
    unbacked: int = 0  # points debited with no lot behind them (an allowed negative balance)

    @property
    def balance(self) -> int:
        """Posted credits minus posted debits."""
        return self.posted_cr - self.posted_dr

    @property
    def available(self) -> int:
        """What a member can still spend: the balance less pending debits."""
        return self.balance - self.pending_dr


@dataclass(frozen=True)
class Lot:
    """Points from one accrual: how many remain, how many pending debits hold, when they expire."""

    lot_id: str
    account: str
    earned_at: float
    expires_at: float | None
    amount: int
    remaining: int
    reserved: int = 0

    @property
    def free(self) -> int:
        """Remaining points no pending debit holds."""
        return self.remaining - self.reserved

    def sort_key(self) -> tuple[float, float, str]:
        """Soonest to expire first (never-expiring last), then oldest."""
        return (
            self.expires_at if self.expires_at is not None else float("inf"),
            self.earned_at,
            self.lot_id,
        )


@dataclass(frozen=True)
class Request:
    """One thing asked of the ledger. `post`/`void` name the pending transfer in `pending_id`."""

    id: str
    kind: Kind
    debit: str = ""
    credit: str = ""
    amount: int = 0
    at: float = 0.0
    pending: bool = False  # two-phase: hold now, post or void later
    pending_id: str = ""
    timeout_s: float | None = None  # a pending transfer not posted by then is void
    expires_at: float | None = None  # for an accrual: when its lot expires
    lot_id: str = ""  # for an expiry: which lot; for a clawback: the accrual it takes back
    allow_negative: bool = False
    linked: bool = False  # succeeds or fails together with the next request
    ref: str = ""  # the business reference (event id, order, statement line)

    def payload_hash(self) -> str:
        """What "the same request" means for idempotency: everything but the id."""
        # Field by field rather than dataclasses.asdict, which cost more than the posting.
        body = [getattr(self, name) for name in _PAYLOAD_FIELDS]
        return hashlib.sha256(orjson.dumps(body)).hexdigest()[:32]


_PAYLOAD_FIELDS = tuple(f.name for f in dataclasses.fields(Request) if f.name != "id")


@dataclass(frozen=True)
class Transfer:
    """A posted or pending movement of points, with the lots it drew on."""

    id: str
    kind: Kind
    debit: str
    credit: str
    amount: int
    at: float
    status: Literal["posted", "pending", "voided"]
    payload_hash: str
    pending_id: str = ""
    timeout_at: float | None = None
    lots: tuple[tuple[str, int], ...] = ()  # (lot id, points) drawn from the debited member
    unbacked: int = 0  # points of the debit no lot covered (allowed negative)
    ref: str = ""
    expires_at: float | None = None  # a pending accrual's lot expiry, for when it is posted


@dataclass(frozen=True)
class Book:
    """The part of the ledger a batch of requests touches (or all of it, in tests)."""

    accounts: Mapping[str, Account] = field(default_factory=dict)
    lots: Mapping[str, Lot] = field(default_factory=dict)
    transfers: Mapping[str, Transfer] = field(default_factory=dict)

    def account(self, account_id: str) -> Account:
        """An account (a new one has zero balances)."""
        return self.accounts.get(account_id) or Account(account_id)

    def lots_of(self, account_id: str) -> list[Lot]:
        """A member's lots with points left, soonest to expire first."""
        return sorted(
            (lot for lot in self.lots.values() if lot.account == account_id and lot.remaining > 0),
            key=Lot.sort_key,
        )


@dataclass
class _Work:
    """Mutable copies for one batch (the function stays pure: inputs are never changed)."""

    accounts: dict[str, Account]
    lots: dict[str, Lot]
    transfers: dict[str, Transfer]
    by_account: dict[str, list[str]] = field(default_factory=dict)  # lot ids per member

    def __post_init__(self) -> None:
        self.index()

    def index(self) -> None:
        self.by_account = {}
        for lot in self.lots.values():
            self.by_account.setdefault(lot.account, []).append(lot.lot_id)

    def new_lot(self, lot: Lot) -> None:
        self.lots[lot.lot_id] = lot
        self.by_account.setdefault(lot.account, []).append(lot.lot_id)

    def snapshot(self) -> tuple[dict[str, Account], dict[str, Lot], dict[str, Transfer]]:
        return dict(self.accounts), dict(self.lots), dict(self.transfers)

    def restore(self, snap: tuple[dict[str, Account], dict[str, Lot], dict[str, Transfer]]) -> None:
        self.accounts, self.lots, self.transfers = (dict(s) for s in snap)  # type: ignore[assignment]
        self.index()

    def account(self, account_id: str) -> Account:
        return self.accounts.get(account_id) or Account(account_id)

    def add(self, account_id: str, **delta: int) -> None:
        a = self.account(account_id)
        self.accounts[account_id] = dataclasses.replace(
            a, **{k: getattr(a, k) + v for k, v in delta.items()}
        )


def post(book: Book, requests: Sequence[Request], now: float) -> tuple[Book, list[str]]:
    """Apply requests in order; the new book and one result per request."""
    work = _Work(dict(book.accounts), dict(book.lots), dict(book.transfers))
    results: list[str] = []
    i = 0
    while i < len(requests):
        # A chain of linked requests ends at the first one that is not linked.
        j = i
        while j < len(requests) - 1 and requests[j].linked:
            j += 1
        chain = requests[i : j + 1]
        if chain[-1].linked:  # the batch ended inside a chain: nothing of it is applied
            results.extend("linked_event_chain_open" for _ in chain)
            break
        snap = work.snapshot() if len(chain) > 1 else None
        chain_results = [_one(work, r, now) for r in chain]
        if snap is not None and any(res not in OK_RESULTS for res in chain_results):
            work.restore(snap)
            chain_results = [
                res if res not in OK_RESULTS else "linked_event_failed" for res in chain_results
            ]
        results.extend(chain_results)
        i = j + 1
    return Book(work.accounts, work.lots, work.transfers), results


def _one(work: _Work, r: Request, now: float) -> str:
    payload = r.payload_hash()
    existing = work.transfers.get(r.id)
    if existing is not None:
        return "exists" if existing.payload_hash == payload else "exists_with_different_payload"
    if r.kind in ("post", "void"):
        return _resolve(work, r, payload, now)
    if r.debit == r.credit:
        return "accounts_must_be_different"
    if r.amount <= 0:
        return "amount_must_be_positive"
    if r.kind == "expire" or (r.kind == "clawback" and r.lot_id):
        # From one named lot: an expiry, or a return that takes back exactly a purchase's points.
        lot = work.lots.get(r.lot_id)
        if lot is None or lot.account != r.debit:
            return "lot_not_found"
        if r.amount > lot.free:
            return "exceeds_available"
        drawn: list[tuple[str, int]] = [(lot.lot_id, r.amount)]
    elif is_member(r.debit):
        debit = work.account(r.debit)
        if r.amount > debit.available and not (r.allow_negative and not r.pending):
            return "exceeds_available"
        drawn = _draw(work, r.debit, r.amount)
    else:
        drawn = []
    unbacked = r.amount - sum(n for _, n in drawn) if is_member(r.debit) else 0
    timeout_at = r.at + r.timeout_s if r.pending and r.timeout_s is not None else None
    transfer = Transfer(
        r.id,
        r.kind,
        r.debit,
        r.credit,
        r.amount,
        r.at,
        "pending" if r.pending else "posted",
        payload,
        timeout_at=timeout_at,
        lots=tuple(drawn),
        unbacked=unbacked,
        ref=r.ref,
        expires_at=r.expires_at,
    )
    work.transfers[r.id] = transfer
    if r.pending:
        work.add(r.debit, pending_dr=r.amount)
        work.add(r.credit, pending_cr=r.amount)
        for lot_id, n in drawn:
            lot = work.lots[lot_id]
            work.lots[lot_id] = dataclasses.replace(lot, reserved=lot.reserved + n)
    else:
        work.add(r.debit, posted_dr=r.amount)
        work.add(r.credit, posted_cr=r.amount)
        for lot_id, n in drawn:
            lot = work.lots[lot_id]
            work.lots[lot_id] = dataclasses.replace(lot, remaining=lot.remaining - n)
        if unbacked:
            work.add(r.debit, unbacked=unbacked)
        if is_member(r.credit):
            _credit_member(work, r)
    return "ok"


def _credit_member(work: _Work, r: Request) -> None:
    """Points into a member account: repay unbacked points first, make a lot of the rest."""
    repay = min(r.amount, work.account(r.credit).unbacked)
    if repay:
        work.add(r.credit, unbacked=-repay)
    if r.amount > repay:
        amount = r.amount - repay
        work.new_lot(Lot(r.id, r.credit, r.at, r.expires_at, amount, amount))


def _draw(work: _Work, account_id: str, amount: int) -> list[tuple[str, int]]:
    """Free points of a member's lots, soonest to expire first; a shortfall (allowed negative)
    is simply not backed by any lot."""
    drawn = []
    left = amount
    lots = sorted(
        (work.lots[i] for i in work.by_account.get(account_id, ()) if work.lots[i].free > 0),
        key=Lot.sort_key,
    )
    for lot in lots:
        if left == 0:
            break
        n = min(lot.free, left)
        drawn.append((lot.lot_id, n))
        left -= n
    return drawn


def _resolve(work: _Work, r: Request, payload: str, now: float) -> str:
    """Post or void a pending transfer, exactly once."""
    pending = work.transfers.get(r.pending_id)
    if pending is None:
        return "pending_transfer_not_found"
    if pending.status != "pending":
        return "pending_transfer_not_pending"
    # The confirmation's own time decides (a late-fed batch must not refuse a timely one).
    expired = pending.timeout_at is not None and pending.timeout_at <= r.at
    if r.kind == "post" and expired:
        return "pending_transfer_expired"
    work.add(pending.debit, pending_dr=-pending.amount)
    work.add(pending.credit, pending_cr=-pending.amount)
    posting = r.kind == "post"
    for lot_id, n in pending.lots:
        lot = work.lots[lot_id]
        lot = dataclasses.replace(
            lot, reserved=lot.reserved - n, remaining=lot.remaining - (n if posting else 0)
        )
        debt = work.account(pending.debit).unbacked
        if not posting and debt:
            # Points a void frees repay points debited beyond the lots first.
            repay = min(n, debt)
            lot = dataclasses.replace(lot, remaining=lot.remaining - repay)
            work.add(pending.debit, unbacked=-repay)
        work.lots[lot_id] = lot
    if posting:
        work.add(pending.debit, posted_dr=pending.amount)
        work.add(pending.credit, posted_cr=pending.amount)
        if is_member(pending.credit):
            _credit_member(work, dataclasses.replace(_as_request(pending), at=r.at))
    work.transfers[pending.id] = dataclasses.replace(
        pending, status="posted" if posting else "voided"
    )
    work.transfers[r.id] = Transfer(
        r.id,
        r.kind,
        pending.debit,
        pending.credit,
        pending.amount if posting else 0,
        r.at,
        "posted" if posting else "voided",
        payload,
        pending_id=pending.id,
        ref=r.ref,
    )
    return "ok"


def _as_request(t: Transfer) -> Request:
    return Request(t.id, t.kind, t.debit, t.credit, t.amount, t.at, expires_at=t.expires_at)


def entries(transfer: Transfer) -> list[tuple[str, int]]:
    """The transfer's two entries (account, signed points: debit negative); they sum to zero."""
    if transfer.kind in ("post", "void"):
        return []  # the pending transfer it resolves carries the entries
    return [(transfer.debit, -transfer.amount), (transfer.credit, transfer.amount)]


def verify(book: Book) -> str | None:
    """The first broken guarantee, in words, or None when the book is sound."""
    sums: dict[str, dict[str, int]] = {}
    reserved: dict[str, int] = {}
    for t in sorted(book.transfers.values(), key=lambda t: t.id):
        if t.kind in ("post", "void"):
            target = book.transfers.get(t.pending_id)
            wanted = "posted" if t.kind == "post" else "voided"
            if target is None or target.status != wanted:
                return f"transfer {t.id}: {t.kind}s {t.pending_id}, which is not {wanted}"
            continue
        if t.status == "pending":
            for lot_id, n in t.lots:
                reserved[lot_id] = reserved.get(lot_id, 0) + n
        if sum(n for _, n in entries(t)) != 0:
            return f"transfer {t.id}: entries do not sum to zero"
        side = "pending" if t.status == "pending" else "posted" if t.status == "posted" else None
        if side is None:
            continue
        for account_id, key in ((t.debit, f"{side}_dr"), (t.credit, f"{side}_cr")):
            bucket = sums.setdefault(account_id, {})
            bucket[key] = bucket.get(key, 0) + t.amount
    for account_id in sorted(set(sums) | set(book.accounts)):
        a = book.account(account_id)
        want = sums.get(account_id, {})
        for key in ("posted_dr", "posted_cr", "pending_dr", "pending_cr"):
            if getattr(a, key) != want.get(key, 0):
                return (
                    f"account {account_id}: {key} is {getattr(a, key)} but its entries sum to "
                    f"{want.get(key, 0)}"
                )
    for lot in book.lots.values():
        if lot.reserved != reserved.get(lot.lot_id, 0):
            return (
                f"lot {lot.lot_id}: {lot.reserved} reserved but pending transfers hold "
                f"{reserved.get(lot.lot_id, 0)}"
            )
        if not 0 <= lot.reserved <= lot.remaining <= lot.amount:
            return (
                f"lot {lot.lot_id}: reserved {lot.reserved}, remaining {lot.remaining}, "
                f"amount {lot.amount}"
            )
    in_lots = lot_totals(book.lots.values())
    for account_id, a in sorted(book.accounts.items()):
        if not is_member(account_id):
            continue
        if a.unbacked < 0:
            return f"account {account_id}: unbacked {a.unbacked} below zero"
        if in_lots.get(account_id, 0) - a.unbacked != a.balance:
            return (
                f"account {account_id}: lots hold {in_lots.get(account_id, 0)} and "
                f"{a.unbacked} are unbacked, but the balance is {a.balance}"
            )
        if a.available < 0 and a.unbacked == 0:
            return f"account {account_id}: available {a.available} below zero"
    return None


def lot_totals(lots: Iterable[Lot]) -> dict[str, int]:
    """Remaining points per member account across its lots."""
    out: dict[str, int] = {}
    for lot in lots:
        out[lot.account] = out.get(lot.account, 0) + lot.remaining
    return out


ExpiryRule = Literal["never", "days", "end_of_month", "end_of_year"]


def expiry_at(earned_at: float, rule: ExpiryRule, days: int = 365, tz: str = "UTC") -> float | None:
    """When points earned at `earned_at` expire under a programme's rule (None: never).

    `days`: N days after earning; `end_of_month` / `end_of_year`: the first instant after the
    last day of the month or year they were earned in, in the programme's time zone.
    """
    if rule == "never":
        return None
    if rule == "days":
        return earned_at + days * 86_400.0
    local = dt.datetime.fromtimestamp(earned_at, zoneinfo.ZoneInfo(tz))
    if rule == "end_of_month":
        year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    else:
        year, month = local.year + 1, 1
    return dt.datetime(year, month, 1, tzinfo=local.tzinfo).timestamp()


def expiries_due(book: Book, now: float, breakage_for: dict[str, str]) -> list[Request]:
    """Requests that expire every lot past its date with points no pending debit holds.

    `breakage_for` maps a member account to its programme's breakage account. The request id is
    the lot's, so running the expiry twice posts each expiry once.
    """
    due = []
    for lot in sorted(book.lots.values(), key=Lot.sort_key):
        if lot.expires_at is None or lot.expires_at > now or lot.free <= 0:
            continue
        due.append(
            Request(
                # With the remaining points: a lot partly expired, then freed by a void,
                # expires the rest under a new id.
                f"expire:{lot.lot_id}:{lot.remaining}",
                "expire",
                lot.account,
                breakage_for[lot.account],
                lot.free,
                at=lot.expires_at,
                lot_id=lot.lot_id,
            )
        )
    return due


def holds_timed_out_transfers(book: Book, now: float) -> list[Transfer]:
    """Pending transfers whose timeout has passed."""
    return [
        x
        for x in sorted(book.transfers.values(), key=lambda x: x.id)
        if x.status == "pending" and x.timeout_at is not None and x.timeout_at <= now
    ]


def holds_timed_out(book: Book, now: float) -> list[Request]:
    """Void requests for pending transfers whose timeout has passed (their points come back)."""
    return [
        Request(f"timeout:{x.id}", "void", pending_id=x.id, at=x.timeout_at or now)
        for x in holds_timed_out_transfers(book, now)
    ]

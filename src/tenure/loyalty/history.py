"""A member's ledger history as business operations: one line per thing that happened to them.

The ledger moves points in transfers; people think in operations. An accrual is one transfer per
funder, a return one clawback per funder, a two-phase redemption a hold and then its post or void,
a merge one move per lot, an expiry run one lapse per lot. Transfers are grouped by what ties
them: a post or void belongs to the pending transfer it resolves (the operation's phases: held,
then posted, voided or timed out); any other transfer to its business reference (the event, the
grant, the merge) or, with none, to its kind and instant.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass
from typing import Literal

from tenure.loyalty.ledger import Kind, Transfer

PhaseName = Literal["held", "posted", "voided", "timed_out"]
RESOLVING = ("post", "void")


@dataclass(frozen=True)
class Phase:
    """One step of an operation and when it happened."""

    name: PhaseName
    at: float
    transfer_id: str


@dataclass(frozen=True)
class Operation:
    """One business operation on an account: its transfers, its phases, its points."""

    key: str
    kind: Kind
    at: float  # when it began
    last: float  # when its latest phase happened
    points: int  # for the account: + credited, - debited (a hold: what it holds)
    status: Literal["posted", "pending", "voided"]
    phases: tuple[Phase, ...]
    transfers: tuple[str, ...]
    counterparts: tuple[str, ...]  # the accounts on the other side
    ref: str

    @property
    def net(self) -> int:
        """What it did to the posted balance (a hold still pending or voided: nothing)."""
        return self.points if self.status == "posted" else 0


def resolved_ids(transfers: Iterable[Transfer]) -> set[str]:
    """The pending transfers that posts and voids among `transfers` resolve."""
    return {t.pending_id for t in transfers if t.kind in RESOLVING and t.pending_id}


def operation_key(t: Transfer, two_phase: Set[str]) -> str:
    """The operation a transfer belongs to (`two_phase`: ids of pending transfers resolved)."""
    if t.kind in RESOLVING:
        return t.pending_id
    if t.id in two_phase or t.status != "posted":
        return t.id
    if t.ref:
        return f"{t.kind}#{t.ref}"
    return f"{t.kind}@{t.at!r}"


def count_after(transfers: Iterable[Transfer], after: tuple[float, str] | None) -> int:
    """How many operations `transfers` hold that sort after the key `after` (last activity,
    operation key), newest first; all of them without one."""
    listed = list(transfers)
    two_phase = resolved_ids(listed)
    last: dict[str, float] = {}
    for t in listed:
        key = operation_key(t, two_phase)
        last[key] = max(last.get(key, t.at), t.at)
    return sum(1 for key, at in last.items() if after is None or (at, key) < after)


def operations(transfers: Iterable[Transfer], account_id: str) -> list[Operation]:
    """The account's transfers as operations, the most recently active first (a redemption
    confirmed today comes before a purchase of yesterday, as on a bank statement)."""
    ordered = sorted(transfers, key=lambda t: (t.at, t.id))
    two_phase = resolved_ids(ordered)
    groups: dict[str, list[Transfer]] = {}
    for t in ordered:
        groups.setdefault(operation_key(t, two_phase), []).append(t)
    ops = [_operation(key, group, account_id, key in two_phase) for key, group in groups.items()]
    return sorted(ops, key=lambda o: (o.last, o.key), reverse=True)


def _operation(key: str, group: list[Transfer], account_id: str, resolved: bool) -> Operation:
    moves = [t for t in group if t.kind not in RESOLVING]
    resolutions = [t for t in group if t.kind in RESOLVING]

    def signed(t: Transfer) -> int:
        return t.amount if t.credit == account_id else -t.amount

    two_phase = resolved or any(t.status != "posted" for t in moves) or not moves
    if moves:
        points, kind, status = sum(signed(t) for t in moves), moves[0].kind, moves[0].status
    else:  # only the resolution was read: it carries the amount when it posted
        last = resolutions[-1]
        points, kind = signed(last), last.kind
        status = "posted" if last.kind == "post" else "voided"
    first = group[0]
    if two_phase:
        phases = [Phase("held", m.at, m.id) for m in moves[:1]]
        phases += [Phase(_resolution(r), r.at, r.id) for r in resolutions]
    else:
        phases = [Phase("posted", first.at, first.id)]
    return Operation(
        key=key,
        kind=kind,
        at=first.at,
        last=group[-1].at,
        points=points,
        status=status,
        phases=tuple(phases),
        transfers=tuple(t.id for t in group),
        counterparts=tuple(sorted({t.credit if t.debit == account_id else t.debit for t in group})),
        ref=next((t.ref for t in [*moves, *resolutions] if t.ref), ""),
    )


def _resolution(t: Transfer) -> PhaseName:
    if t.kind == "post":
        return "posted"
    return "timed_out" if t.id.startswith("timeout:") else "voided"

"""Grants and adjustments of a member's points: goodwill, service recovery, corrections.

Each has a reason and an author, and each is an audit record, as is every approval and rejection.
Up to the programme's four-eyes threshold (`programmes: {NAME: {four_eyes_above: N}}` in
tenure.yaml; 500 points where it is not set) one posts at once; above it, it is proposed and waits
in `ledger_proposals` until someone other than its author approves it (or anyone rejects it).

A grant credits the member from the programme's goodwill account, in a lot that expires like the
points the programme earns; an adjustment moves points either way (a negative one takes them back,
never more than the member has available). The transfer's id is the proposal's, so it posts once.

Each function is a whole use case in one transaction, so a CLI command or an API route is a thin
call: the caller's name is `by`; `key` makes a resend (a client retrying a request) answer the
same grant rather than make a second one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tenure.audit.chain import chain
from tenure.errors import InputError
from tenure.events.personal import id_of
from tenure.loyalty.contracts import Contract
from tenure.loyalty.ledger import OK_RESULTS, Request, goodwill_account, member_account
from tenure.store import ledger, repo
from tenure.store import loyalty as loyalty_store
from tenure.store.db import Store
from tenure.store.loyalty import Connection

if TYPE_CHECKING:
    from tenure.workspace import Workspace

DEFAULT_FOUR_EYES_ABOVE = 500
ManualKind = Literal["grant", "adjust"]
STATUSES = ("proposed", "posted", "rejected")


@dataclass(frozen=True)
class Terms:
    """What a workspace sets for grants: the four-eyes threshold per programme, and the
    contracts and programmes (which programmes exist, and when their points expire)."""

    contracts: Sequence[Contract] = ()
    four_eyes_above: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, workspace: Workspace) -> Terms:
        """A loaded workspace's terms (what an API route passes)."""
        return cls(workspace.contracts, workspace.settings.four_eyes_above)

    def threshold(self, programme: str) -> int:
        """More points than this wait for a second person."""
        return self.four_eyes_above.get(programme, DEFAULT_FOUR_EYES_ABOVE)

    def programmes(self) -> set[str]:
        """The programmes a grant may name."""
        return {"default", *(c.programme for c in self.contracts), *self.four_eyes_above}

    def expiry(self, programme: str, at: float) -> float | None:
        """When points granted at `at` expire: as the programme's earned points do (its own-brand
        programme's rule first, else the first contract's with one), or never."""
        when = dt.datetime.fromtimestamp(at, dt.UTC)
        for c in sorted(self.contracts, key=lambda c: not c.own_brand):
            version = c.version_at(when) if c.programme == programme else None
            if version is not None and version.expiry.rule != "never":
                return version.expiry.at(at)
        return None


def propose(
    store: Store,
    terms: Terms,
    kind: ManualKind,
    programme: str,
    customer_id: str,
    points: int,
    reason: str,
    by: str,
    now: dt.datetime,
    key: str | None = None,
) -> dict[str, Any]:
    """Grant (points > 0) or adjust (either sign) a member's points: posted at once up to the
    programme's threshold, else proposed for a second person; audited either way."""
    reason, by = _checked(terms, kind, programme, points, reason, by)
    with store.transaction() as conn:
        # Taken first: grants go one at a time, so a resent key is seen, never inserted twice.
        seq, head = repo.lock_audit_head(conn)
        customer = _member_id(conn, customer_id)
        seed = key if key is not None else f"{customer}\x1f{points}\x1f{by}\x1f{now.isoformat()}"
        proposal_id = (
            f"{kind}-"
            + hashlib.sha256(f"{kind}\x1f{programme}\x1f{seed}".encode()).hexdigest()[:16]
        )
        existing = loyalty_store.proposal(conn, proposal_id)
        if existing is not None:
            return _resent(existing, customer, points, reason, by, key)
        threshold = terms.threshold(programme)
        waits = abs(points) > threshold
        row = {
            "proposal_id": proposal_id,
            "kind": kind,
            "programme": programme,
            "customer_id": customer,
            "points": points,
            "reason": reason,
            "author": by,
            "status": "proposed" if waits else "posted",
            "threshold": threshold,
            "created_at": now,
            "decided_by": None,
            "decided_at": None if waits else now,
            "note": None,
        }
        if not waits:
            _post(conn, terms, row, now)
        loyalty_store.insert_proposal(conn, row)
        body = {"kind": f"ledger.{kind}", **_about(row), "reason": reason, "by": by}
        body |= {"status": row["status"], "four_eyes_above": threshold, "at": now.isoformat()}
        repo.append_audit(conn, chain(head, seq + 1, [body]), [(body["kind"], proposal_id)])
    return row


def approve(
    store: Store, terms: Terms, proposal_id: str, by: str, now: dt.datetime
) -> dict[str, Any]:
    """Approve a waiting grant or adjustment and post it: never by its author; exactly once."""
    by = by.strip()
    if not by:
        raise InputError("an approval needs --by (who approves)")
    with store.transaction() as conn:
        seq, head = repo.lock_audit_head(conn)
        row = _waiting(conn, proposal_id)
        if by.casefold() == str(row["author"]).strip().casefold():
            raise InputError(
                f"{proposal_id} was proposed by {row['author']}; someone else must approve it"
            )
        # The member may have merged into another id since: the points go to the survivor.
        row = {**row, "customer_id": _member_id(conn, row["customer_id"])}
        _post(conn, terms, row, now)
        loyalty_store.decide_proposal(conn, proposal_id, "posted", by, now)
        body = {"kind": "ledger.approve", **_about(row), "proposed_by": row["author"], "by": by}
        body["at"] = now.isoformat()
        repo.append_audit(conn, chain(head, seq + 1, [body]), [("ledger.approve", proposal_id)])
    return {**row, "status": "posted", "decided_by": by, "decided_at": now}


def reject(store: Store, proposal_id: str, by: str, note: str, now: dt.datetime) -> dict[str, Any]:
    """Turn down a waiting grant or adjustment (its author may withdraw it); audited."""
    by, note = by.strip(), note.strip()
    if not by or not note:
        raise InputError("a rejection needs --by (who rejects) and --reason")
    with store.transaction() as conn:
        seq, head = repo.lock_audit_head(conn)
        row = _waiting(conn, proposal_id)
        loyalty_store.decide_proposal(conn, proposal_id, "rejected", by, now, note)
        body = {"kind": "ledger.reject", **_about(row), "proposed_by": row["author"], "by": by}
        body |= {"reason": note, "at": now.isoformat()}
        repo.append_audit(conn, chain(head, seq + 1, [body]), [("ledger.reject", proposal_id)])
    return {**row, "status": "rejected", "decided_by": by, "decided_at": now, "note": note}


def proposals(
    conn: Connection,
    status: str | None = "proposed",
    customer_id: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Grants and adjustments, newest first: those waiting by default, `status=None` for all."""
    if status is not None and status not in STATUSES:
        raise InputError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    customer = id_of(customer_id) if customer_id else None
    return loyalty_store.proposals(conn, status, customer, limit)


def _checked(
    terms: Terms, kind: ManualKind, programme: str, points: int, reason: str, by: str
) -> tuple[str, str]:
    """The reason and author, trimmed, once the request makes sense."""
    if kind == "grant" and points <= 0:
        raise InputError(
            "a grant gives points: POINTS must be above zero (to take points back, "
            "use an adjustment)"
        )
    if points == 0:
        raise InputError("an adjustment of zero points changes nothing")
    if not reason.strip():
        raise InputError(f"a {kind} needs a --reason")
    if not by.strip() or len(by.strip()) > 100:
        raise InputError(f"a {kind} needs --by (who asks for it, at most 100 characters)")
    known = terms.programmes()
    if programme not in known:
        raise InputError(
            f"no programme {programme!r} in the workspace (known: {', '.join(sorted(known))})"
        )
    return reason.strip(), by.strip()


def _member_id(conn: Connection, customer_id: str) -> str:
    """The id the member's points are kept under (an email's digest; a merged id's survivor)."""
    customer = id_of(customer_id)
    return repo.identities_of(conn, [customer]).get(customer, customer)


def _resent(
    row: dict[str, Any], customer: str, points: int, reason: str, by: str, key: str | None
) -> dict[str, Any]:
    """The grant a resent key made, when the resend asks for the same; else a refusal."""
    same = (row["customer_id"], int(row["points"]), row["reason"], row["author"]) == (
        customer,
        points,
        reason,
        by,
    )
    if not same:
        raise InputError(f"key {key!r} was used for another {row['kind']} ({row['proposal_id']})")
    return row


def _waiting(conn: Connection, proposal_id: str) -> dict[str, Any]:
    """A proposal still waiting, locked until the transaction ends."""
    row = loyalty_store.proposal(conn, proposal_id, lock=True)
    if row is None:
        raise InputError(
            f"no grant or adjustment {proposal_id!r} (see `tenure ledger proposals --status all`)"
        )
    if row["status"] != "proposed":
        who = f" by {row['decided_by']}" if row["decided_by"] else ""
        raise InputError(f"{proposal_id} is already {row['status']}{who}")
    return row


def _about(row: Mapping[str, Any]) -> dict[str, Any]:
    """What an audit record says about the grant or adjustment it is about."""
    return {
        "proposal_id": row["proposal_id"],
        "of": row["kind"],
        "programme": row["programme"],
        "customer_id": row["customer_id"],
        "points": int(row["points"]),
    }


def _post(conn: Connection, terms: Terms, row: Mapping[str, Any], now: dt.datetime) -> None:
    """The ledger transfer: from the programme's goodwill to the member, or back."""
    programme, points = row["programme"], int(row["points"])
    member, goodwill = member_account(programme, row["customer_id"]), goodwill_account(programme)
    at = now.timestamp()
    request = Request(
        row["proposal_id"],
        row["kind"],
        goodwill if points > 0 else member,
        member if points > 0 else goodwill,
        abs(points),
        at=at,
        expires_at=terms.expiry(programme, at) if points > 0 else None,
        ref=row["proposal_id"],
    )
    (result,) = ledger.post_in(conn, [request], at)
    if result == "exceeds_available":
        raise InputError(
            f"{row['proposal_id']}: the member has fewer than {abs(points)} points available "
            "to take back"
        )
    if result not in OK_RESULTS:
        raise InputError(f"the ledger refused {row['proposal_id']}: {result}")

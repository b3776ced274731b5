"""API tokens, roles and dashboard sessions: who may call what, and which rows they may read.

Tokens are random (`secrets.token_urlsafe`), stored only as SHA-256 digests, shown once at
creation. Each has one role; a partner token also names its partner. A token may expire, and may
be revoked; either way it is refused from that moment. A token's holder is its `name` (the label
given at creation, else the token id): four-eyes rules compare holders, so the author of a policy
or an adjustment cannot approve it with another token of their own.

A dashboard session is a random id in the cookie (its digest in the store, never the token): it
ends at sign-out, when its token is revoked or expires, after 30 idle minutes or 12 hours.

`scope(caller, contracts)` is the one place a caller becomes the partner scope the reads take.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tenure.errors import InputError
from tenure.loyalty.contracts import Contract
from tenure.store import service_reads, tokens
from tenure.store.db import Connection
from tenure.store.service_reads import EVERYONE, Scope

ROLES = ("admin", "ingest", "policy-author", "approver", "operator", "auditor", "partner")
SESSION_IDLE = dt.timedelta(minutes=30)
SESSION_LONGEST = dt.timedelta(hours=12)
# A session's last use is written at most this often, not on every page (fewer writes).
SESSION_TOUCH = dt.timedelta(minutes=1)
_DURATION = re.compile(r"([1-9][0-9]{0,5})([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
LONGEST_EXPIRY = dt.timedelta(days=3650)


@dataclass(frozen=True)
class Caller:
    """Who a request comes from."""

    token_id: str
    role: str
    partner: str | None
    name: str


def digest(token: str) -> str:
    """What is stored of a token or a session id."""
    return hashlib.sha256(token.encode()).hexdigest()


def duration(text: str) -> dt.timedelta:
    """A lifetime written as a count and a unit: 90m, 12h, 30d, 2w (at most ten years)."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise InputError(f"--expires-in must look like 90m, 12h, 30d or 2w, not {text!r}")
    lifetime = dt.timedelta(**{_UNITS[found[2]]: int(found[1])})
    if lifetime > LONGEST_EXPIRY:
        raise InputError(f"--expires-in is at most {LONGEST_EXPIRY.days} days")
    return lifetime


def create_token(
    conn: Connection,
    role: str,
    partner: str | None,
    label: str,
    now: dt.datetime,
    expires_in: dt.timedelta | None = None,
) -> tuple[str, str]:
    """A new token for `role`: (token id, the token itself, shown only now)."""
    if role not in ROLES:
        raise InputError(f"--role must be one of {', '.join(ROLES)}, not {role!r}")
    if (role == "partner") != (partner is not None):
        raise InputError("a partner token needs --partner, and only a partner token takes it")
    token = "tnr_" + secrets.token_urlsafe(32)
    token_id = "tok-" + secrets.token_hex(6)
    expires_at = now + expires_in if expires_in is not None else None
    tokens.add_token(conn, digest(token), token_id, role, partner, label, now, expires_at)
    return token_id, token


def _caller(row: tokens.TokenRow) -> Caller:
    token_id, role, partner, label = row
    return Caller(token_id, role, partner, (label or "").strip() or token_id)


def caller(conn: Connection, token: str, now: dt.datetime | None = None) -> Caller | None:
    """The caller a token belongs to (None: unknown, revoked or expired)."""
    found = tokens.live_token(conn, digest(token), now or dt.datetime.now(dt.UTC))
    return None if found is None else _caller(found)


def _listed(row: dict[str, Any]) -> dict[str, Any]:
    """A token as it is listed: its label is the `name` of who holds it."""
    return {
        "token_id": row["token_id"],
        "name": row["label"] or None,
        **{k: row[k] for k in ("role", "partner", "created_at", "expires_at", "revoked_at")},
    }


def list_tokens(conn: Connection) -> list[dict[str, Any]]:
    """Every token (never its secret nor its digest), oldest first."""
    return [_listed(row) for row in tokens.tokens(conn)]


def token_page(
    conn: Connection, limit: int, after: Sequence[Any] | None = None
) -> list[dict[str, Any]]:
    """Tokens oldest first, after the key (created_at, token_id), as they are listed."""
    return [_listed(row) for row in service_reads.tokens_page(conn, limit, after)]


def revoke_token(conn: Connection, token_id: str, now: dt.datetime) -> dict[str, Any] | None:
    """Revoke a token at once (its dashboard sessions end with it): the token as it now is, or
    None when there is no such token. Revoking twice keeps the first time."""
    found = tokens.revoke(conn, token_id, now)
    return None if found is None else _listed(found)


def start_session(conn: Connection, token: str, now: dt.datetime) -> tuple[str, Caller] | None:
    """A new dashboard session for a live token: (session id for the cookie, its caller)."""
    who = caller(conn, token, now)
    if who is None:
        return None
    session = secrets.token_urlsafe(32)
    tokens.add_session(conn, digest(session), who.token_id, now)
    return session, who


def session_caller(conn: Connection, session: str, now: dt.datetime) -> tuple[Caller, bool] | None:
    """The caller of a live session, and whether its last use should be written (`touch`)."""
    found = tokens.live_session(conn, digest(session), now, SESSION_IDLE, SESSION_LONGEST)
    if found is None:
        return None
    row, seen_at = found
    return _caller(row), now - seen_at >= SESSION_TOUCH


def touch_session(conn: Connection, session: str, now: dt.datetime) -> None:
    """The session was used now: its idle time starts again."""
    tokens.touch_session(conn, digest(session), now)


def end_session(conn: Connection, session: str, now: dt.datetime) -> None:
    """End a session: its id is refused from now on."""
    tokens.end_session(conn, digest(session), now)


def shared_fields(contracts: Sequence[Contract], partner: str) -> frozenset[str]:
    """The customer fields a partner's contract lets it see (its newest version's scope)."""
    for contract in contracts:
        if contract.covers(partner):
            return frozenset(contract.versions[-1].sharing.get(partner, []))
    return frozenset()


def scope(who: Caller, contracts: Sequence[Contract]) -> Scope:
    """The rows a caller may read: a partner's own (and the fields its contract shares), or
    everyone's for every other role (their guards already decided what they may call)."""
    if who.role != "partner":
        return EVERYONE
    partner = who.partner or ""
    return Scope(partner, shared_fields(contracts, partner))

"""Reads and writes of API tokens and dashboard sessions: only digests of either are stored (see
`api/auth.py`). A token is live until it is revoked or expires; a session is live while it has
not ended, its token is live, and it is neither idle too long nor too old."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, or_, select

from tenure.store import repo
from tenure.store import schema as t

# What a token is to its callers: (token id, role, partner, label).
TokenRow = tuple[str, str, str | None, str | None]


def add_token(
    conn: Connection,
    token_hash: str,
    token_id: str,
    role: str,
    partner: str | None,
    label: str,
    created_at: dt.datetime,
    expires_at: dt.datetime | None = None,
) -> None:
    """Store a new token by its digest."""
    conn.execute(
        t.api_tokens.insert(),
        [
            {
                "token_hash": token_hash,
                "token_id": token_id,
                "role": role,
                "partner": partner,
                "label": label,
                "created_at": created_at,
                "expires_at": expires_at,
            }
        ],
    )


def _live(now: dt.datetime) -> Any:
    """The condition a live token meets at `now`: not revoked, not expired."""
    a = t.api_tokens.c
    return (a.revoked_at.is_(None)) & (or_(a.expires_at.is_(None), a.expires_at > now))


def live_token(conn: Connection, token_hash: str, now: dt.datetime) -> TokenRow | None:
    """(token id, role, partner, label) of the live token with this digest, or None."""
    a = t.api_tokens.c
    row = conn.execute(
        select(a.token_id, a.role, a.partner, a.label).where(a.token_hash == token_hash, _live(now))
    ).first()
    return None if row is None else (row.token_id, row.role, row.partner, row.label)


def tokens(conn: Connection, token_id: str | None = None) -> list[dict[str, Any]]:
    """Every token (or the one with this id), oldest first, without its digest."""
    a = t.api_tokens.c
    query = select(
        a.token_id, a.label, a.role, a.partner, a.created_at, a.expires_at, a.revoked_at
    ).order_by(a.created_at, a.token_id)
    if token_id is not None:
        query = query.where(a.token_id == token_id)
    return repo.rows(conn, query)


def revoke(conn: Connection, token_id: str, now: dt.datetime) -> dict[str, Any] | None:
    """Revoke a token (a second time keeps the first time) and end its dashboard sessions; the
    token as it now is, or None when there is no such token."""
    a, s = t.api_tokens.c, t.dashboard_sessions.c
    conn.execute(
        t.api_tokens.update()
        .where(a.token_id == token_id, a.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    conn.execute(
        t.dashboard_sessions.update()
        .where(s.token_id == token_id, s.ended_at.is_(None))
        .values(ended_at=now)
    )
    found = tokens(conn, token_id)
    return found[0] if found else None


def add_session(conn: Connection, session_hash: str, token_id: str, now: dt.datetime) -> None:
    """Start a dashboard session by its digest."""
    conn.execute(
        t.dashboard_sessions.insert(),
        [{"session_hash": session_hash, "token_id": token_id, "created_at": now, "seen_at": now}],
    )


def live_session(
    conn: Connection, session_hash: str, now: dt.datetime, idle: dt.timedelta, longest: dt.timedelta
) -> tuple[TokenRow, dt.datetime] | None:
    """The token of the live session with this digest and when the session was last seen, or
    None (no such session, ended, idle longer than `idle`, older than `longest`, or its token
    revoked or expired)."""
    a, s = t.api_tokens.c, t.dashboard_sessions.c
    row = conn.execute(
        select(a.token_id, a.role, a.partner, a.label, s.seen_at)
        .join(t.api_tokens, a.token_id == s.token_id)
        .where(
            s.session_hash == session_hash,
            s.ended_at.is_(None),
            s.seen_at > now - idle,
            s.created_at > now - longest,
            _live(now),
        )
    ).first()
    if row is None:
        return None
    return (row.token_id, row.role, row.partner, row.label), row.seen_at


def touch_session(conn: Connection, session_hash: str, now: dt.datetime) -> None:
    """Note that a session was used now (its idle time starts again)."""
    s = t.dashboard_sessions.c
    conn.execute(
        t.dashboard_sessions.update()
        .where(s.session_hash == session_hash, s.ended_at.is_(None))
        .values(seen_at=now)
    )


def end_session(conn: Connection, session_hash: str, now: dt.datetime) -> None:
    """End a session (sign-out, or a new sign-in from the same browser)."""
    s = t.dashboard_sessions.c
    conn.execute(
        t.dashboard_sessions.update()
        .where(s.session_hash == session_hash, s.ended_at.is_(None))
        .values(ended_at=now)
    )

"""Reads and writes of API tokens: only their digests are stored (see `api/auth.py`)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, select

from tenure.store import schema as t


def add_token(
    conn: Connection,
    token_hash: str,
    token_id: str,
    role: str,
    partner: str | None,
    label: str,
    created_at: dt.datetime,
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
            }
        ],
    )


def live_token(conn: Connection, token_hash: str) -> tuple[str, str, str | None, str | None] | None:
    """(token id, role, partner, label) of the unrevoked token with this digest, or None."""
    a = t.api_tokens.c
    row = conn.execute(
        select(a.token_id, a.role, a.partner, a.label).where(
            a.token_hash == token_hash, a.revoked_at.is_(None)
        )
    ).first()
    return None if row is None else (row.token_id, row.role, row.partner, row.label)

"""API tokens and roles: who may call what.

Tokens are random (`secrets.token_urlsafe`), stored only as SHA-256 digests, shown once at
creation. Each has one role; a partner token also names its partner. A token's holder is its
`name` (the label given at creation, else the token id): four-eyes rules compare holders, so
the author of a policy or an adjustment cannot approve it with another token of their own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from tenure.errors import InputError
from tenure.store import tokens
from tenure.store.db import Connection

ROLES = ("admin", "ingest", "policy-author", "approver", "operator", "auditor", "partner")


@dataclass(frozen=True)
class Caller:
    """Who a request comes from."""

    token_id: str
    role: str
    partner: str | None
    name: str


def digest(token: str) -> str:
    """What is stored of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    conn: Connection, role: str, partner: str | None, label: str, now: dt.datetime
) -> tuple[str, str]:
    """A new token for `role`: (token id, the token itself, shown only now)."""
    if role not in ROLES:
        raise InputError(f"--role must be one of {', '.join(ROLES)}, not {role!r}")
    if (role == "partner") != (partner is not None):
        raise InputError("a partner token needs --partner, and only a partner token takes it")
    token = "tnr_" + secrets.token_urlsafe(32)
    token_id = "tok-" + secrets.token_hex(6)
    tokens.add_token(conn, digest(token), token_id, role, partner, label, now)
    return token_id, token


def caller(conn: Connection, token: str) -> Caller | None:
    """The caller a token belongs to (None: unknown or revoked)."""
    found = tokens.live_token(conn, digest(token))
    if found is None:
        return None
    token_id, role, partner, label = found
    return Caller(token_id, role, partner, (label or "").strip() or token_id)

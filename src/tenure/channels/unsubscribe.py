"""Unsubscribe links: a signed token naming a customer, a channel and a purpose.

The token is the credential of `GET/POST /v1/unsubscribe/{token}` (no bearer token: the person
who got the message follows it), so it is signed with the workspace's unsubscribe key (HMAC-
SHA256) and anything else is refused. It is signed, not encrypted: it names the customer by the
id tenure keeps (an email id is a digest), and it goes only to that customer.

The key is `TENURE_UNSUBSCRIBE_KEY`, else `<workspace>/unsubscribe.key`, made on first use. The
API and every worker must share it (one workspace directory, or the variable when workers run
elsewhere): a link signed by one is checked by the other. Rotating it voids the links sent so far.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import orjson

from tenure.errors import ConfigError

KEY_ENV = "TENURE_UNSUBSCRIBE_KEY"
KEY_FILE = "unsubscribe.key"
_VERSION = 1
_MAC_BYTES = 16
_DOMAIN = b"tenure unsubscribe v1."  # what the MAC is over, so no other HMAC use can collide


@dataclass(frozen=True)
class Unsubscribe:
    """What a link withdraws: the customer's consent to `purpose` on `channel`."""

    customer_id: str
    channel: str
    purpose: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, body: str) -> bytes:
    return hmac.new(key, _DOMAIN + body.encode(), hashlib.sha256).digest()[:_MAC_BYTES]


def sign(key: bytes, what: Unsubscribe) -> str:
    """The token of a link (URL-safe characters only)."""
    body = _b64(orjson.dumps([_VERSION, what.customer_id, what.channel, what.purpose]))
    return f"{body}.{_b64(_mac(key, body))}"


def read(key: bytes, token: str) -> Unsubscribe | None:
    """What a token withdraws, or None when it is not one this key signed."""
    body, dot, mac = token.partition(".")
    if not dot or len(token) > 2000 or not token.isascii():
        return None
    try:
        given = _unb64(mac)
        if not hmac.compare_digest(given, _mac(key, body)):
            return None
        version, customer_id, channel, purpose = orjson.loads(_unb64(body))
    except (binascii.Error, ValueError, TypeError):
        return None
    if version != _VERSION or not all(isinstance(v, str) for v in (customer_id, channel, purpose)):
        return None
    return Unsubscribe(customer_id, channel, purpose)


def unsubscribe_key(workspace: Path) -> bytes:
    """The workspace's unsubscribe key: the variable, else its key file (made once, 0600)."""
    if value := os.environ.get(KEY_ENV, "").strip():
        return value.encode()
    path = workspace / KEY_FILE
    if path.exists():
        return _read_key(path)
    workspace.mkdir(parents=True, exist_ok=True)
    fresh = workspace / f".{KEY_FILE}.{secrets.token_hex(4)}"
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_urlsafe(32).encode())
    try:
        # A link, not a rename: when another process made the key meanwhile, theirs stays.
        os.link(fresh, path)
    except FileExistsError:
        pass
    finally:
        fresh.unlink()
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    key = path.read_bytes().strip()
    if len(key) < 16:
        raise ConfigError(f"{path}: the unsubscribe key is too short (at least 16 characters)")
    return key

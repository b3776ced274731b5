"""Channel adapters: how a message leaves tenure. Each `send` either returns or raises.

A `Retryable` failure (a timeout, a refused connection, a 5xx or 429) is worth another attempt;
a `Permanent` one (a 4xx, a malformed address) is not. Every message carries its idempotency key
(`Idempotency-Key` header, SMTP header of the same name, a field in the file record) so a
receiver can recognise a message it has seen; tenure itself never sends a delivered key twice.
"""

from __future__ import annotations

import hashlib
import hmac
import smtplib
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field

from tenure.errors import TenureError


@dataclass(frozen=True)
class Message:
    """One thing to deliver: to whom, on which channel, what, under which idempotency key."""

    key: str
    decision_id: str
    customer_id: str
    channel: str
    template: str
    payload: dict[str, Any] = field(default_factory=dict)
    kind: Literal["deliver", "ticket"] = "deliver"

    def body(self) -> dict[str, Any]:
        """The JSON a receiver gets."""
        return {
            "idempotency_key": self.key,
            "decision_id": self.decision_id,
            "customer_id": self.customer_id,
            "channel": self.channel,
            "kind": self.kind,
            "template": self.template,
            "payload": self.payload,
        }


class DeliveryError(TenureError):
    """A delivery attempt failed."""


class Retryable(DeliveryError):
    """Worth another attempt."""


class Permanent(DeliveryError):
    """Another attempt would fail the same way."""


class Channel(Protocol):
    """Anything that can deliver a message."""

    def send(self, message: Message) -> None:
        """Deliver or raise Retryable / Permanent."""


class ChannelSettings(BaseModel):
    """One channel in tenure.yaml (`channels: {name: {...}}`); unnamed channels are files."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["file", "webhook", "smtp", "crm"] = "file"
    url: str | None = None
    secret: str | None = Field(default=None, description="HMAC-SHA256 key for webhook signatures.")
    keys: dict[str, str] | None = Field(
        default=None,
        description="Signing keys by key id (at most two, for rotation); instead of `secret`.",
    )
    timeout_s: float = Field(default=5.0, gt=0)
    host: str = "localhost"
    port: int = 25
    sender: str = "tenure@localhost"
    recipient: str = Field(
        default="{customer_id}",
        description="Address of an email; {customer_id} is filled in; a payload `to` wins.",
    )
    # Delivery behaviour.
    max_attempts: int = Field(default=4, ge=1, le=20)
    backoff_s: float = Field(default=1.0, ge=0, description="First retry delay; doubles.")
    backoff_max_s: float = Field(default=60.0, ge=0)
    jitter_s: float = Field(default=1.0, ge=0)
    failure_threshold: int = Field(default=4, ge=1, description="Failed attempts in a row to open.")
    open_for_s: float = Field(default=60.0, ge=0, description="How long an open circuit holds.")
    rate_per_minute: int | None = Field(default=None, ge=1)


class FileChannel:
    """JSON lines per channel under the workspace's outbox/: the default, and what demos use."""

    def __init__(self, directory: Path, name: str) -> None:
        self.path = directory / f"{name}.jsonl"

    def send(self, message: Message) -> None:
        """Append one line (flushed and synced: a line on disk is a delivery)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as f:
                f.write(orjson.dumps(message.body()) + b"\n")
                f.flush()
        except OSError as exc:
            raise Retryable(f"cannot write {self.path}: {exc.strerror}") from None


# How old a signed request a receiver should still accept (`verify`): a captured request
# replayed later than this is refused.
SIGNATURE_TOLERANCE_S = 300


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256).hexdigest()


def signature(keys: dict[str, str], body: bytes, timestamp: int) -> str:
    """The `X-Tenure-Signature` header: `t=<unix seconds>,<key id>=<hex HMAC-SHA256 of
    "<t>.<body>">` for each active key (two while a key is rotated), so the timestamp is signed
    with the body and a receiver holding either key verifies."""
    macs = [f"{kid}={_mac(secret, timestamp, body)}" for kid, secret in keys.items()]
    return ",".join([f"t={timestamp}", *macs])


def verify(
    header: str,
    body: bytes,
    keys: dict[str, str],
    now: float,
    tolerance_s: float = SIGNATURE_TOLERANCE_S,
) -> bool:
    """A receiver's check of `X-Tenure-Signature`: signed by one of `keys` (id -> secret), and
    no older (or newer) than `tolerance_s` against the receiver's clock `now`."""
    parts = dict(p.strip().partition("=")[::2] for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts.pop("t"))
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    return any(
        kid in keys and hmac.compare_digest(mac, _mac(keys[kid], timestamp, body))
        for kid, mac in parts.items()
    )


def signing_keys(settings: ChannelSettings, name: str) -> dict[str, str]:
    """The channel's active signing keys by id (`secret` alone is the key `default`)."""
    if settings.secret and settings.keys:
        raise TenureError(f"channel {name!r}: set `secret` or `keys`, not both")
    keys = settings.keys or ({"default": settings.secret} if settings.secret else {})
    if len(keys) > 2:
        raise TenureError(f"channel {name!r}: at most two active signing keys (for a rotation)")
    for kid, secret in keys.items():
        if kid == "t" or not kid.replace("-", "").replace("_", "").isalnum() or not secret:
            raise TenureError(
                f"channel {name!r}: key ids are letters, digits, - and _ (not `t`), "
                "each with a secret"
            )
    return keys


class WebhookChannel:
    """POST the message as JSON, signed, with its idempotency key; a 2xx is a delivery."""

    def __init__(self, settings: ChannelSettings, name: str) -> None:
        if not settings.url:
            raise TenureError(f"channel {name!r}: a {settings.type} channel needs a url")
        self.url = settings.url
        self.keys = signing_keys(settings, name)
        self.client = httpx.Client(timeout=settings.timeout_s)

    def _body(self, message: Message) -> dict[str, Any]:
        return message.body()

    def send(self, message: Message) -> None:
        """One POST; 5xx, 408, 429 and network errors are retryable, other 4xx are not."""
        body = orjson.dumps(self._body(message))
        headers = {"Content-Type": "application/json", "Idempotency-Key": message.key}
        if self.keys:
            headers["X-Tenure-Signature"] = signature(self.keys, body, int(time.time()))
        try:
            response = self.client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise Retryable(f"{type(exc).__name__}: {exc}") from None
        code = response.status_code
        if 200 <= code < 300:
            return
        text = f"HTTP {code} from {self.url}: {response.text[:200]}"
        if code >= 500 or code in (408, 429):
            raise Retryable(text)
        raise Permanent(text)


class CrmChannel(WebhookChannel):
    """A CRM's ticket webhook: the same delivery, a ticket-shaped body."""

    def _body(self, message: Message) -> dict[str, Any]:
        return {
            "idempotency_key": message.key,
            "customer_id": message.customer_id,
            "queue": message.payload.get("queue", "retention"),
            "subject": message.payload.get("subject", message.template),
            "decision_id": message.decision_id,
        }


class SmtpChannel:
    """Email over SMTP (one connection per message; retention volumes do not need pooling)."""

    def __init__(self, settings: ChannelSettings, name: str) -> None:
        self.settings = settings

    def send(self, message: Message) -> None:
        """Build and send one email; connection problems and 4xx replies are retryable."""
        s = self.settings
        email = EmailMessage()
        email["From"] = s.sender
        email["To"] = str(
            message.payload.get("to") or s.recipient.format(customer_id=message.customer_id)
        )
        email["Subject"] = str(message.payload.get("subject") or message.template)
        email["Idempotency-Key"] = message.key
        email["Message-ID"] = f"<{hashlib.sha256(message.key.encode()).hexdigest()[:32]}@tenure>"
        email.set_content(orjson.dumps(message.body(), option=orjson.OPT_INDENT_2).decode())
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout_s) as smtp:
                smtp.send_message(email)
        except smtplib.SMTPRecipientsRefused as exc:
            raise Permanent(f"recipient refused: {exc.recipients}") from None
        except smtplib.SMTPResponseException as exc:
            error = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"
            raise (Retryable(error) if 400 <= exc.smtp_code < 500 else Permanent(error)) from None
        except (TimeoutError, OSError, smtplib.SMTPException) as exc:
            raise Retryable(f"{type(exc).__name__}: {exc}") from None


def make_channel(name: str, settings: ChannelSettings, outbox_dir: Path) -> Channel:
    """The adapter for a channel's settings."""
    if settings.type == "webhook":
        return WebhookChannel(settings, name)
    if settings.type == "crm":
        return CrmChannel(settings, name)
    if settings.type == "smtp":
        return SmtpChannel(settings, name)
    return FileChannel(outbox_dir, name)

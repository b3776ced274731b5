"""Channel adapters: how a message leaves tenure. Each `send` either returns or raises.

A `Retryable` failure (a timeout, a refused connection, a 5xx or 429) is worth another attempt;
a `Permanent` one (a 4xx, a malformed address) is not. Every message carries its idempotency key
(`Idempotency-Key` header, SMTP header of the same name, a field in the file record) so a
receiver can recognise a message it has seen; tenure itself never sends a delivered key twice.

Adapters that reach a person (email over SMTP, SMS through a gateway) are `Addressed`: the
courier composes a `Letter` for them at send time (the customer's address from the personal-data
table, the message rendered from its templates; channels/messages.py) and hands it over with the
message. A letter is never stored: the outbox, the deliveries table and the workflow history
keep only the `Message`, which names the customer by id.
"""

from __future__ import annotations

import hashlib
import hmac
import smtplib
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

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


@dataclass(frozen=True)
class Letter:
    """A message composed for one person at send time: where it goes and what it says. Held in
    memory for the attempts only, never stored (it holds the address)."""

    to: str = field(repr=False)
    text: str
    subject: str = ""
    html: str | None = None
    unsubscribe_url: str = ""


# What an addressed adapter composes: an email (subject, text, optional HTML; to the customer's
# email address) or an SMS (text; to their phone number).
Needs = Literal["email", "sms"]


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


@runtime_checkable
class Addressed(Protocol):
    """A channel that delivers composed letters to a person's address."""

    needs: Needs

    def send_letter(self, message: Message, letter: Letter) -> None:
        """Deliver the letter or raise Retryable / Permanent."""


DEFAULT_UNSUBSCRIBE_URL = "http://127.0.0.1:8000/v1/unsubscribe/{token}"


class ChannelSettings(BaseModel):
    """One channel in tenure.yaml (`channels: {name: {...}}`); unnamed channels are files."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["file", "webhook", "smtp", "sms", "crm"] = "file"
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
    unsubscribe_url: str = Field(
        default=DEFAULT_UNSUBSCRIBE_URL,
        description="Where a message's unsubscribe link points ({token} is filled in): the "
        "public address of `tenure serve`'s `/v1/unsubscribe/{token}`.",
    )
    # Delivery behaviour.
    max_attempts: int = Field(default=4, ge=1, le=20)
    backoff_s: float = Field(default=1.0, ge=0, description="First retry delay; doubles.")
    backoff_max_s: float = Field(default=60.0, ge=0)
    jitter_s: float = Field(default=1.0, ge=0)
    failure_threshold: int = Field(default=4, ge=1, description="Failed attempts in a row to open.")
    open_for_s: float = Field(default=60.0, ge=0, description="How long an open circuit holds.")
    rate_per_minute: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _no_recipient(cls, data: Any) -> Any:
        if isinstance(data, dict) and "recipient" in data:
            raise ValueError(
                "`recipient` is no longer a setting: an email goes to the address kept in the "
                "customer's personal data (a profile.updated event's `email`); remove it"
            )
        return data

    @model_validator(mode="after")
    def _token_slot(self) -> ChannelSettings:
        if "{token}" not in self.unsubscribe_url:
            raise ValueError("unsubscribe_url must hold {token}, where the link's token goes")
        if self.type == "sms" and not self.url:
            raise ValueError("an sms channel needs a url (its gateway's)")
        return self


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
        self._post(self._body(message), message.key)

    def _post(self, document: dict[str, Any], key: str) -> None:
        body = orjson.dumps(document)
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
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


class SmsChannel(WebhookChannel):
    """An SMS gateway's webhook: the composed text and the customer's phone number, signed like
    any webhook; the gateway sends it."""

    needs: Needs = "sms"

    def send(self, message: Message) -> None:
        """An SMS is always composed first (the courier calls `send_letter`)."""
        raise Permanent("an sms channel sends composed letters only")

    def send_letter(self, message: Message, letter: Letter) -> None:
        """POST the text and the number to the gateway."""
        self._post(
            {
                "idempotency_key": message.key,
                "decision_id": message.decision_id,
                "to": letter.to,
                "text": letter.text,
            },
            message.key,
        )


class SmtpChannel:
    """Email over SMTP (one connection per message; retention volumes do not need pooling)."""

    needs: Needs = "email"

    def __init__(self, settings: ChannelSettings, name: str) -> None:
        self.settings = settings

    def send(self, message: Message) -> None:
        """An email is always composed first (the courier calls `send_letter`)."""
        raise Permanent("an smtp channel sends composed letters only")

    def email(self, message: Message, letter: Letter) -> EmailMessage:
        """The email: text and (when the template has one) HTML alternatives, and the
        unsubscribe headers mail clients show as a button (RFC 2369, one-click: RFC 8058)."""
        email = EmailMessage()
        email["From"] = self.settings.sender
        email["To"] = letter.to
        email["Subject"] = letter.subject
        email["Date"] = formatdate(usegmt=True)
        email["Idempotency-Key"] = message.key
        email["Message-ID"] = f"<{hashlib.sha256(message.key.encode()).hexdigest()[:32]}@tenure>"
        if letter.unsubscribe_url:
            email["List-Unsubscribe"] = f"<{letter.unsubscribe_url}>"
            email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        email.set_content(letter.text)
        if letter.html is not None:
            email.add_alternative(letter.html, subtype="html")
        return email

    def send_letter(self, message: Message, letter: Letter) -> None:
        """Send one email; connection problems and 4xx replies are retryable."""
        s = self.settings
        email = self.email(message, letter)
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout_s) as smtp:
                smtp.send_message(email, from_addr=s.sender, to_addrs=[letter.to])
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
    if settings.type == "sms":
        return SmsChannel(settings, name)
    return FileChannel(outbox_dir, name)

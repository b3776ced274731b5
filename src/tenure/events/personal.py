"""Personal data in events: which fields are sensitive, their digests, and how they are masked.

A `profile.updated` event may carry a name, an email and a phone number. The event log keeps a
digest in place of each (so the log still shows that, and which, personal data arrived, and an
event re-fed later is recognised); the clear values go to the `personal_data` table only, where
erasing a customer deletes them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import msgspec

from tenure.events.envelope import IDENTITY_TYPES, Event

SENSITIVE = ("name", "email", "phone")
DIGEST_PREFIX = "sha256:"


# An id that is an email address (a customer id some systems use): kept as a digest everywhere
# but the personal-data table, so it is masked like any email and erased with the person.
_EMAIL_ID = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def _address(value: str) -> str | None:
    """The address `value` is, case folded, when it is an email id; else None."""
    if "@" in value and _EMAIL_ID.match(value):
        return value.strip().lower()
    return None


def id_of(value: str) -> str:
    """The id tenure keeps for `value`: the digest of an email address (case folded), else
    `value` itself."""
    address = _address(value)
    return value if address is None else digest(address)


def email_ids(events: Sequence[Event]) -> tuple[list[Event], dict[str, str]]:
    """The events with email ids (the customer's, an alias's `previous_id`) as their digests,
    and each digest's address."""
    clear: dict[str, str] = {}

    def kept(value: str) -> str | None:
        address = _address(value)
        if address is None:
            return None
        key = digest(address)
        clear[key] = address
        return key

    out = []
    for e in events:
        changes: dict[str, Any] = {}
        if (customer := kept(e.customer_id)) is not None:
            changes["customer_id"] = customer
        previous = getattr(e.payload, "previous_id", None) if e.type in IDENTITY_TYPES else None
        if previous and (other := kept(previous)) is not None:
            changes["payload"] = msgspec.structs.replace(e.payload, previous_id=other)
        out.append(msgspec.structs.replace(e, **changes) if changes else e)
    return out, clear


def digest(value: str) -> str:
    """What the event log keeps of a personal value."""
    return DIGEST_PREFIX + hashlib.sha256(value.encode()).hexdigest()


def is_digest(value: str) -> bool:
    """A value that is already a digest (an event re-read from the log)."""
    return value.startswith(DIGEST_PREFIX) and len(value) == len(DIGEST_PREFIX) + 64


def personal_of(event: Event) -> dict[str, str]:
    """The clear personal values an event carries (empty for most events)."""
    if event.type != "profile.updated":
        return {}
    found = {f: getattr(event.payload, f, None) for f in SENSITIVE}
    return {f: v for f, v in found.items() if isinstance(v, str) and not is_digest(v)}


# Keys that name personal data wherever a producer puts them in what the schema does not know
# (a `context`, extra payload fields): their text values are kept as digests, like the payload's,
# and so is every text under `traits` (what identify calls send about the person). A bare `name`
# is too often a library's or a product's to count.
_PERSONAL_KEYS = frozenset(
    {"first_name", "last_name", "firstname", "lastname", "full_name", "email", "phone"}
    | {"mobile", "address", "street", "ip", "ip_address", "birthday", "date_of_birth"}
)


def _scrubbed(value: Any, personal: bool = False) -> Any:
    if isinstance(value, dict):
        return {
            k: _scrubbed(v, personal or k.lower() in _PERSONAL_KEYS or k == "traits")
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrubbed(v, personal) for v in value]
    if personal and isinstance(value, str) and not is_digest(value):
        return digest(value)
    return value


def needs_redaction(event: Event) -> bool:
    """Whether the log keeps this event other than as given (personal values in it)."""
    return event.type == "profile.updated" or event.context is not None or event.extra is not None


def redacted(event: Event) -> Event:
    """The event as the log keeps it: every personal value replaced by its digest (the typed
    personal fields, and personal-looking keys in the context and extra fields)."""
    changes: dict[str, Any] = {}
    if clear := personal_of(event):
        changes["payload"] = msgspec.structs.replace(
            event.payload, **{f: digest(v) for f, v in clear.items()}
        )
    if event.context is not None:
        changes["context"] = _scrubbed(event.context)
    if event.extra is not None:
        changes["extra"] = _scrubbed(event.extra)
    return msgspec.structs.replace(event, **changes) if changes else event


def mask(field: str, value: str | None) -> str | None:
    """A personal value as a role that may not see it sees it: enough to recognise, not to use."""
    if value is None:
        return None
    if field == "email" and "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    if field == "phone":
        return "***" + value[-2:]
    return value[:1] + "***"

"""Personal data in events: which fields are sensitive, their digests, and how they are masked.

A `profile.updated` event may carry a name, an email and a phone number. The event log keeps a
digest in place of each (so the log still shows that, and which, personal data arrived, and an
event re-fed later is recognised); the clear values go to the `personal_data` table only, where
erasing a customer deletes them.
"""

from __future__ import annotations

import hashlib

import msgspec

from tenure.events.envelope import Event

SENSITIVE = ("name", "email", "phone")
DIGEST_PREFIX = "sha256:"


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


def redacted(event: Event) -> Event:
    """The event as the log keeps it: every personal value replaced by its digest."""
    clear = personal_of(event)
    if not clear:
        return event
    payload = msgspec.structs.replace(event.payload, **{f: digest(v) for f, v in clear.items()})
    return msgspec.structs.replace(event, payload=payload)


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

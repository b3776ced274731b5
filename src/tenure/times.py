"""Time, one way. Every component takes a `Clock`; nothing else asks what time it is.

Inside tenure an instant is an aware UTC `datetime`. Written down (records, history lines,
JSON) it is ISO 8601 in UTC with a `Z` (`iso`), read back with `parse_instant`. Epoch seconds
appear only at the edges that want numbers (the ledger, Temporal timers, the courier's leases
and rate windows), converted with `epoch` and `from_epoch`.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    """A source of the current time, told about each event as it is processed."""

    def observe(self, event_time: dt.datetime) -> None:
        """Note that processing has reached `event_time`."""

    def now(self) -> dt.datetime:
        """The current time, timezone-aware."""


def iso(t: dt.datetime) -> str:
    """An instant written down: UTC, ISO 8601, with a `Z`."""
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse_instant(text: str) -> dt.datetime:
    """An instant read back; a time without a zone is refused, never guessed."""
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return parsed.astimezone(dt.UTC)


def epoch(t: dt.datetime) -> float:
    """Seconds since the epoch, for the edges that count in numbers."""
    return t.timestamp()


def from_epoch(seconds: float) -> dt.datetime:
    """Epoch seconds as an aware UTC instant."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def iso_from_epoch(seconds: float | None) -> str | None:
    """Epoch seconds written down (None stays None)."""
    return None if seconds is None else iso(from_epoch(seconds))

"""Guardrails: the limits no policy can switch off.

Consent, contact caps, quiet hours, the cooldown, the suppression list, the global control group and
budgets. They are settings of the workspace (caps, quiet hours, control group, suppression list) or
floors a policy can only tighten (cooldown, budget). Each check is a pure function of the customer's
contact history, time zone and the clock time, and a block names the guardrail and the numbers
that tripped it. Caps and quiet hours are counted in the customer's own time zone.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Cap(_Model):
    """At most `max` contacts per local calendar day or ISO week, on one channel or on all."""

    max: int = Field(ge=0)
    per: Literal["day", "week"]
    channel: str | None = None

    def label(self) -> str:
        """How the cap reads in a reason."""
        return f"{self.max} per {self.per}" + (f" on {self.channel}" if self.channel else "")


class QuietHours(_Model):
    """A nightly local-time window with no deliveries: deferred to its end, or dropped."""

    start: dt.time = dt.time(21, 0)
    end: dt.time = dt.time(8, 0)
    mode: Literal["defer", "drop"] = "defer"


class GuardrailSettings(_Model):
    """The workspace's guardrails (`guardrails:` in tenure.yaml); these defaults otherwise."""

    caps: tuple[Cap, ...] = (Cap(max=1, per="day"), Cap(max=3, per="week"))
    quiet_hours: QuietHours | None = QuietHours()
    control_share: float = Field(default=0.05, ge=0.0, le=0.5)
    control_salt: str = Field(default="tenure", min_length=1)
    suppressed_customers: frozenset[str] = frozenset()
    max_concurrent_journeys: int = Field(default=1, ge=1)
    default_timezone: str = "UTC"

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        _zone_info(value)
        return value


@functools.cache
def _zone_info(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {name!r}") from None


@dataclass(frozen=True, slots=True)
class Contact:
    """One delivered (or scheduled) contact: when (epoch seconds) and on which channel."""

    at: int
    channel: str


# Contacts older than this cannot count toward any day or week cap; memory keeps no more.
CONTACT_MEMORY_S = 8 * 86_400


def zone(timezone: str | None, settings: GuardrailSettings) -> zoneinfo.ZoneInfo:
    """The customer's zone, else the workspace default (also for a zone the host lacks)."""
    try:
        return _zone_info(timezone or settings.default_timezone)
    except ValueError:
        return _zone_info(settings.default_timezone)


def in_control_group(
    customer_id: str, settings: GuardrailSettings, share: float | None = None
) -> bool:
    """Stable membership of the global control group: the same customer, the same answer.

    `share` (at least the workspace's) widens it by the same hash, so a larger group always
    contains the global one.
    """
    digest = hashlib.sha256(f"{settings.control_salt}\x1f{customer_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64
    return point < max(settings.control_share, share or 0.0)


def _period(t: dt.datetime, per: str) -> tuple[int, ...]:
    return (t.year, t.month, t.day) if per == "day" else tuple(t.isocalendar()[:2])


def cap_block(
    contacts: Iterable[Contact],
    channel: str,
    at: dt.datetime,
    tz: zoneinfo.ZoneInfo,
    caps: Iterable[Cap],
) -> str | None:
    """Why a contact on `channel` delivered at `at` would breach a cap, or None."""
    local = at.astimezone(tz)
    history = [(dt.datetime.fromtimestamp(c.at, tz), c.channel) for c in contacts]
    for cap in caps:
        if cap.channel is not None and cap.channel != channel:
            continue
        key = _period(local, cap.per)
        used = sum(
            1
            for t, ch in history
            if _period(t, cap.per) == key and (cap.channel is None or ch == cap.channel)
        )
        if used >= cap.max:
            return (
                f"cap {cap.label()} reached: {used} already in this {cap.per} "
                f"({local:%Y-%m-%d} {tz.key})"
            )
    return None


def _quiet(local: dt.time, q: QuietHours) -> bool:
    if q.start <= q.end:
        return q.start <= local < q.end
    return local >= q.start or local < q.end  # the window spans midnight


def delivery_time(
    now: dt.datetime, tz: zoneinfo.ZoneInfo, q: QuietHours | None
) -> tuple[dt.datetime | None, str | None]:
    """(when to deliver, why it moved) — None when quiet hours drop the contact."""
    if q is None:
        return now, None
    local = now.astimezone(tz)
    if not _quiet(local.timetz().replace(tzinfo=None), q):
        return now, None
    if q.mode == "drop":
        return None, f"quiet hours {q.start:%H:%M}-{q.end:%H:%M} ({local:%H:%M} {tz.key})"
    end = local.replace(hour=q.end.hour, minute=q.end.minute, second=0, microsecond=0)
    if end <= local:
        end += dt.timedelta(days=1)
    # Wall-clock arithmetic in the zone, then normalised: a DST change in between is respected.
    end = end.replace(tzinfo=None).replace(tzinfo=tz)
    return end.astimezone(dt.UTC), (
        f"deferred from {local:%H:%M} to {q.end:%H:%M} {tz.key} (quiet hours)"
    )


def recent(contacts: Iterable[Contact], now: dt.datetime) -> tuple[Contact, ...]:
    """The contacts that can still count toward a cap, oldest first."""
    horizon = int(now.timestamp()) - CONTACT_MEMORY_S
    return tuple(sorted((c for c in contacts if c.at >= horizon), key=lambda c: (c.at, c.channel)))

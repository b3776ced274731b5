"""Tiers: which level a member holds, from a qualification metric, with a grace period down.

A programme's tiers (`programmes: {NAME: {tiers: ...}}` in tenure.yaml) name a metric (points
earned in a rolling window or in the calendar year, or spend in a rolling window), levels with
thresholds, and how members go down: after a grace period below their level, one level at a time
(or straight to where they qualify). Going up is immediate. `evaluate` is pure; every change it
returns carries its reason, which becomes the audit record.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

BASE = "base"  # below every threshold


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Level(_Model):
    """A tier and the metric value that qualifies for it."""

    name: str = Field(min_length=1, max_length=50)
    threshold: float = Field(gt=0)


class Tiers(_Model):
    """A programme's tier rules."""

    metric: Literal["points_rolling", "points_calendar_year", "spend_rolling"] = "points_rolling"
    window_days: int = Field(default=365, ge=1)
    levels: list[Level] = Field(min_length=1)
    grace_days: int = Field(default=30, ge=0)
    one_step_down: bool = True

    @model_validator(mode="after")
    def _ascending(self) -> Tiers:
        values = [lv.threshold for lv in self.levels]
        names = [lv.name for lv in self.levels]
        if values != sorted(values) or len(set(values)) != len(values):
            raise ValueError("levels must be listed from the lowest threshold up, each different")
        if len(set(names)) != len(names) or BASE in names:
            raise ValueError(f"level names must be unique and not {BASE!r}")
        return self

    def names(self) -> list[str]:
        """Tiers from the bottom: base, then the levels."""
        return [BASE, *(lv.name for lv in self.levels)]

    def qualifies(self, value: float) -> str:
        """The highest level the metric value reaches."""
        reached = [lv.name for lv in self.levels if value >= lv.threshold]
        return reached[-1] if reached else BASE

    def window_start(self, now: dt.datetime) -> dt.datetime:
        """Where the metric's window begins."""
        if self.metric == "points_calendar_year":
            return dt.datetime(now.year, 1, 1, tzinfo=dt.UTC)
        return now - dt.timedelta(days=self.window_days)


@dataclass(frozen=True)
class Standing:
    """A member's tier and, while below it, since when."""

    tier: str = BASE
    below_since: dt.datetime | None = None


@dataclass(frozen=True)
class Change:
    """A tier change with its reason."""

    before: str
    after: str
    reason: str


def evaluate(
    tiers: Tiers, standing: Standing, value: float, now: dt.datetime
) -> tuple[Standing, Change | None]:
    """The member's new standing given the metric value now, and the change if there is one."""
    names = tiers.names()
    target = tiers.qualifies(value)
    here, there = (
        names.index(standing.tier if standing.tier in names else BASE),
        names.index(target),
    )
    metric = f"{tiers.metric} {value:g}"
    if there > here:
        return Standing(target), Change(standing.tier, target, f"{metric} reaches {target}")
    if there == here:
        return Standing(standing.tier), None
    # Below the current level: the grace period starts, and when it has run out, down we go.
    since = standing.below_since or now
    if now - since < dt.timedelta(days=tiers.grace_days):
        return Standing(standing.tier, since), None
    lower = names[here - 1] if tiers.one_step_down else target
    reason = (
        f"{metric} below {standing.tier} since {since:%Y-%m-%d}, "
        f"past the {tiers.grace_days}-day grace period"
    )
    # One step at a time: still below the new level, the next grace period starts now.
    still_below = names.index(lower) > there
    return Standing(lower, now if still_below else None), Change(standing.tier, lower, reason)

"""Clocks: the only place tenure learns what time it is.

Live mode asks the wall; replay and batch runs over history use event time, so a 90-day history is
decided as it would have been on each day, and replays give the same answers.
"""

from __future__ import annotations

import datetime as dt

from tenure.times import Clock

__all__ = ["Clock", "EventClock", "FixedClock", "WallClock"]


class WallClock:
    """Live mode: wall time; events do not move it."""

    def observe(self, event_time: dt.datetime) -> None:
        """Ignored: live decisions happen now."""

    def now(self) -> dt.datetime:
        """The wall time in UTC."""
        return dt.datetime.now(dt.UTC)


class EventClock:
    """Replay mode: the time is that of the event being processed; the watermark moves with
    event time only (the pipeline decides at instants, see features/instants.py)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

    def observe(self, event_time: dt.datetime) -> None:
        """Move to `event_time` (backwards too: each customer is decided at its own event)."""
        self._now = event_time

    def now(self) -> dt.datetime:
        """The time of the event being processed."""
        return self._now


class FixedClock:
    """A live clock that stays where it is put (and moves only when told): for tests, what-if
    runs and simulations of live time. Like the wall clock it moves the watermark."""

    def __init__(self, at: dt.datetime) -> None:
        self._now = at

    def observe(self, event_time: dt.datetime) -> None:
        """Ignored: the time is set, not observed."""

    def now(self) -> dt.datetime:
        """The time it was set to."""
        return self._now

    def set(self, at: dt.datetime) -> None:
        """Put the clock at `at`."""
        self._now = at

    def advance(self, by: dt.timedelta) -> None:
        """Move the clock forward by `by`."""
        self._now += by

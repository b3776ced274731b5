"""Decision instants: when a customer is evaluated, fixed by event time and policy alone.

The rule (the README's "When customers are evaluated" says the same for users):

- Time is cut into periods, UTC days by default (`Cadence.period_s`): [00:00, 24:00).
- A customer is evaluated at the close of every period in which they had an event.
- A silence timer (event types, step) fires at the newest event of those types plus the step,
  when no event of those types came in between: a customer active on day 10 at 09:00 and silent
  since is evaluated at day 17 09:00 for a 7-day step, day 24 09:00 for a 14-day one.
- An instant is processed once the watermark (the newest event time seen, minus the allowed
  lateness; the wall clock's when live) reaches it. The features at an instant fold the events
  strictly before it: an event at exactly midnight belongs to the day it opens.
- An event that arrives behind the watermark is late: it is folded into the state, but no instant
  at or behind the watermark is made for it, so a decision already made is never revisited.

`advance` walks one customer forward to the watermark and returns the instants it passed, each
with its features. Pure: no clock, no I/O.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tenure.events.envelope import Event
from tenure.features.snapshot import Brief, Features, brief, snapshot
from tenure.features.state import DAY_S, CustomerState, Fold, apply_all

# Types whose absence is silence unless a policy names others (the backtest's "no-activity").
ACTIVITY_TYPES: frozenset[str] = frozenset({"usage", "purchase"})


def seconds(e: Event) -> int:
    """An event's time in whole epoch seconds (the unit instants are counted in)."""
    return int(e.occurred_at.timestamp())


def event_order(e: Event) -> tuple[int, str]:
    """The order pending events are kept in: time, then id."""
    return seconds(e), e.event_id


@dataclass(frozen=True, slots=True)
class Silence:
    """A silence timer: `step_s` after the newest event of `types`."""

    types: frozenset[str]
    step_s: int

    @property
    def key(self) -> str:
        """How a policy and an instant name this timer, e.g. `silence:14d:purchase+usage`."""
        step = f"{self.step_s / DAY_S:g}d" if self.step_s % 3600 == 0 else f"{self.step_s}s"
        return f"silence:{step}:{'+'.join(sorted(self.types))}"


@dataclass(frozen=True, slots=True)
class Cadence:
    """When customers are evaluated: the period and the silence timers of every policy."""

    period_s: int = DAY_S
    silences: tuple[Silence, ...] = ()
    # The timers by the event types they count from, each group's (step, key) by step: the walk
    # asks for a group's newest event once, not once per step.
    groups: tuple[tuple[frozenset[str], tuple[tuple[int, str], ...]], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        by_types: dict[frozenset[str], set[tuple[int, str]]] = {}
        for s in self.silences:
            by_types.setdefault(s.types, set()).add((s.step_s, s.key))
        groups = tuple((types, tuple(sorted(steps))) for types, steps in by_types.items())
        object.__setattr__(self, "groups", groups)

    def close(self, t: int) -> int:
        """The close of the period holding `t` (periods are aligned to the epoch, so UTC days)."""
        return (t // self.period_s + 1) * self.period_s


class Later:
    """The full features at an instant, built on first use from the state a walk started from
    and the events it had folded by then (`apply_all` folds exactly what the walk's `Fold` did).

    Written by hand, not with `functools.cached_property`: instants are slotted and frozen, and
    this holder is what lets the walk skip the snapshot of the instants no decision reads.
    """

    __slots__ = ("_at", "_events", "_start", "_upto", "_value")

    def __init__(
        self,
        value: Features | None,
        start: CustomerState | None = None,
        events: Sequence[Event] = (),
        upto: int = 0,
        at: int = 0,
    ) -> None:
        self._value = value
        self._start, self._events, self._upto, self._at = start, events, upto, at

    def get(self) -> Features:
        """The features (the same snapshot an eager walk takes at the instant)."""
        if self._value is None:
            assert self._start is not None
            state = apply_all(self._start, self._events[: self._upto])
            self._value = features_at(state, self._at)
            self._start, self._events = None, ()
        return self._value


@dataclass(frozen=True, slots=True)
class Instant:
    """One customer at one decision instant: why, what was seen since the last one, features."""

    customer_id: str
    at: int  # epoch seconds
    brief: Brief | Features  # what the instant is scored and settled on (the features if eager)
    period: bool  # the close of a period with events
    silences: frozenset[str]  # keys of the silence timers firing here
    seen_types: frozenset[str]  # event types folded since the previous instant
    newest: tuple[str, str] | None  # (event id, type) of the newest of those, for correlation
    newest_event: Event | None  # that event (what `event.payload` shows a policy)
    later: Later = field(compare=False, repr=False)  # the full features, now or on first use

    @property
    def features(self) -> Features:
        """The full features at the instant (built now, when the walk was not eager)."""
        return self.later.get()


@dataclass(frozen=True, slots=True)
class Advanced:
    """A customer after `advance`: their instants, state, what is still pending, next due."""

    instants: list[Instant]
    state: CustomerState
    through: int  # the state folds every event before this time (and late ones)
    pending: list[Event] = field(default_factory=list)  # events at or after `through`, in order
    due: int | None = None  # the next instant, or None when nothing can come due without events


def features_at(state: CustomerState, at: int) -> Features:
    """The features at instant `at` of a state folding the events strictly before it: what the
    pipeline scores and decides on, and what point-in-time training sets learn from."""
    return snapshot(state, dt.datetime.fromtimestamp(at, dt.UTC))


def fold_until(
    state: CustomerState, events: Sequence[Event], start: int, at: int
) -> tuple[CustomerState, int]:
    """Fold `events[start:]` (in event order) that are strictly before `at`; the new state and
    the index of the first event not folded."""
    end = start
    n = len(events)
    while end < n and seconds(events[end]) < at:
        end += 1
    if end == start:
        return state, start
    return apply_all(state, events[start:end]), end


class Timed(Protocol):
    """What timers are read from: a state, or a fold as it goes."""

    def last_of(self, types: frozenset[str]) -> int | None: ...


def next_due(
    state: Timed, times: Sequence[int], start: int, cadence: Cadence, after: int
) -> tuple[int | None, bool]:
    """The first instant after `after`: the close of the period of a pending event (`times`:
    their times, in order) or a silence timer of the folded state. Returns (instant, whether
    it closes a period with events)."""
    period: int | None = None
    for i in range(start, len(times)):
        close = cadence.close(times[i])
        if close > after:
            period = close
            break
    silence: int | None = None
    for types, steps in cadence.groups:
        last = state.last_of(types)
        if last is None:
            continue
        for step, _ in steps:
            if last + step > after:
                due = last + step
                silence = due if silence is None or due < silence else silence
                break
    if period is None:
        return silence, False
    if silence is None or period <= silence:
        return period, True
    return silence, False


def firing(
    state: Timed, cadence: Cadence, at: int, seen: Mapping[str, int] | None = None
) -> frozenset[str]:
    """The silence timers that fire exactly at `at` once events are folded into `state` (`seen`:
    the newest time of each type among them)."""
    out = []
    for types, steps in cadence.groups:
        last = state.last_of(types)
        for t in types & seen.keys() if seen else ():
            last = seen[t] if last is None or seen[t] > last else last
        if last is None:
            continue
        out.extend(key for step, key in steps if last + step == at)
    return frozenset(out)


def _newest_of(
    events: Sequence[Event], times: Sequence[int], i: int, upto: int
) -> tuple[dict[str, int], Event | None]:
    """The newest time of each event type among `events[i:upto]`, and the newest of them in
    event order (time, then id)."""
    newest_of: dict[str, int] = {}
    newest: Event | None = None
    newest_key = (-1, "")
    for k in range(i, upto):
        e, at = events[k], times[k]
        etype = e.type
        if newest_of.get(etype, -1) < at:
            newest_of[etype] = at
        if at > newest_key[0] or (at == newest_key[0] and e.event_id > newest_key[1]):
            newest, newest_key = e, (at, e.event_id)
    return newest_of, newest


def _view(
    eager: bool,
    state: CustomerState,
    fold: Fold | None,
    at: int,
    walk: tuple[CustomerState, Sequence[Event], int],
) -> tuple[Brief | Features, Later]:
    """What an instant is scored on, and its full features: the snapshot of the state (an
    eager walk), or the brief of the fold as it goes with the snapshot left for later (`walk`:
    the state the walk started from, its events and how many of them are folded)."""
    if eager:
        full = features_at(state, at)
        return full, Later(full)
    start, events, upto = walk
    return brief(fold or state, at), Later(None, start, events, upto, at)


def advance(
    state: CustomerState,
    through: int,
    pending: Sequence[Event],
    cadence: Cadence,
    floor: int,
    until: int,
    eager: bool = True,
) -> Advanced:
    """Walk one customer from `max(through, floor)` to the watermark `until`.

    `state` folds every event before `through`; `pending` holds the rest, in event order.
    `floor` is the watermark before these events arrived: instants at or behind it were
    processed then, so none is made again (that is what makes an event late).
    `eager`: take the full snapshot at every instant (what a model scores on); otherwise each
    instant carries its `Brief` and builds the snapshot only when asked (`Later`).
    """
    t = max(through, floor)
    start, events = state, tuple(pending)
    times = [seconds(e) for e in events]
    i = 0
    out: list[Instant] = []
    fold: Fold | None = None  # made at the first event folded (a silent walk copies nothing)
    while True:
        at, period = next_due(fold or state, times, i, cadence, t)
        if at is None or at > until:
            break
        upto = bisect.bisect_left(times, at, i)  # the events strictly before the instant
        seen = events[i:upto]
        newest_of, newest = _newest_of(events, times, i, upto)
        silences = firing(fold or state, cadence, at, newest_of)
        if not (period or silences):
            # A stale timer (activity came in between): nothing is folded here, so the close of
            # the day of that activity stays an instant, wherever the watermark stopped.
            t = at
            continue
        if seen:
            fold = fold or Fold(state)
            fold.add(seen)
        i, through = upto, at
        if eager and fold is not None:
            state = fold.state()
        view, later = _view(eager, state, fold, at, (start, events, upto))
        out.append(
            Instant(
                state.customer_id,
                at,
                view,
                period,
                silences,
                frozenset(newest_of),
                (newest.event_id, newest.type) if newest else None,
                newest,
                later,
            )
        )
        t = at
    if fold is not None:
        state = fold.state()
    due, _ = next_due(state, times, i, cadence, t)
    return Advanced(out, state, through, list(events[i:]), due)


def split_late(
    state: CustomerState, through: int, events: Sequence[Event]
) -> tuple[CustomerState, list[Event]]:
    """Fold the events from before `through` (too late to wait for an instant) and return the
    rest, which wait for their instant."""
    late = [e for e in events if seconds(e) < through]
    if not late:
        return state, list(events)
    return apply_all(state, late), [e for e in events if seconds(e) >= through]

"""Typed contracts of the act layer: outbox messages, the journey workflow's argument and signal,
and the activities' inputs. Pure data, no Temporal.

The pipeline writes an outbox message in the same transaction as its decision; the dispatcher
reads it back with `read_outbox` and hands it to Temporal as is (a `JourneyStart` is the
workflow's argument, a `JourneySignal`'s observation its signal). Every field added later has a
default, so rows and workflow histories written before it still read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal, assert_never

from tenure.errors import TenureError
from tenure.journeys.machine import Command, JourneyInput, Observation, Resolved, Seen

OutboxKind = Literal["journey.start", "journey.signal", "human.task"]


class UnknownOutboxKind(TenureError):
    """An outbox row of a kind this version cannot carry out."""


@dataclass(frozen=True)
class JourneyStart:
    """Start a decision's journey: the `journey.start` message and the workflow's argument."""

    decision_id: str
    customer_id: str
    action_id: str
    channel: str
    decided_at: str  # ISO 8601, as the decision records it
    journey: dict[str, Any]  # the spec as it was when decided
    journey_hash: str
    journey_horizon_s: float
    listens: list[str]
    cost: float = 0.0
    deliver_at: str | None = None  # ISO 8601; quiet hours defer the first send to then
    policy_id: str = ""
    budget_period: str | None = None  # the budget period the cost was reserved in
    correlation_id: str = ""  # the triggering event: every log line of the journey carries it
    trace: dict[str, str] | None = None  # the decision's trace context, when traced
    activity_heartbeat_s: float | None = None  # set by the dispatcher from the workspace

    def machine_input(self) -> JourneyInput:
        """What the pure machine needs of it."""
        deliver_at = None
        if self.deliver_at is not None:
            deliver_at = dt.datetime.fromisoformat(self.deliver_at).timestamp()
        return JourneyInput(
            decision_id=self.decision_id,
            customer_id=self.customer_id,
            action_id=self.action_id,
            channel=self.channel,
            cost=self.cost,
            policy_id=self.policy_id,
            budget_period=self.budget_period,
            deliver_at=deliver_at,
            journey=self.journey,
            correlation_id=self.correlation_id,
        )


@dataclass(frozen=True)
class EventObserved:
    """A customer event a running journey listens for."""

    at: float  # epoch seconds (Temporal's edge)
    type: str
    event_id: str
    payload: dict[str, Any] = field(default_factory=dict)
    kind: Literal["event"] = "event"


@dataclass(frozen=True)
class TaskResolved:
    """A person resolved the journey's task."""

    at: float
    task: str
    resolution: str
    by: str = ""
    kind: Literal["resolved"] = "resolved"


SignalObservation = EventObserved | TaskResolved


def observation(signal: SignalObservation) -> Observation:
    """A signal as the machine's observation."""
    match signal:
        case EventObserved():
            return Seen(signal.at, signal.type, signal.event_id, signal.payload)
        case TaskResolved():
            return Resolved(signal.at, signal.task, signal.resolution, signal.by)
        case _:
            assert_never(signal)


@dataclass(frozen=True)
class JourneySignal:
    """Tell a running journey what happened: the `journey.signal` message."""

    observation: SignalObservation
    correlation_id: str = ""
    trace: dict[str, str] | None = None


@dataclass(frozen=True)
class HumanTask:
    """Open a task in a queue for a decision handed to a person: the `human.task` message."""

    decision_id: str
    customer_id: str
    queue: str | None
    reason: str
    decided_at: str
    correlation_id: str = ""
    trace: dict[str, str] | None = None


OutboxMessage = JourneyStart | JourneySignal | HumanTask
_FIELDS = {cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in (JourneyStart, HumanTask)}


def outbox_kind(message: OutboxMessage) -> OutboxKind:
    """The kind an outbox row of this message has."""
    match message:
        case JourneyStart():
            return "journey.start"
        case JourneySignal():
            return "journey.signal"
        case HumanTask():
            return "human.task"
        case _:
            assert_never(message)


def outbox_payload(message: OutboxMessage) -> dict[str, Any]:
    """The JSON payload stored in the outbox row.

    A shallow dict of the fields, not `dataclasses.asdict`: the fields are already JSON values,
    and asdict's deep copy of the journey spec in every start message was a tenth of a sweep
    that decides 100,000 customers (benchmarks/sweep.py). The row is encoded as it is written.
    """
    if isinstance(message, JourneySignal):
        return dataclasses.asdict(message)  # its observation is a dataclass of its own
    return {name: getattr(message, name) for name in _FIELDS[type(message)]}


def _known(cls: type[Any], data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _signal_observation(data: dict[str, Any]) -> SignalObservation:
    if data.get("kind") == "resolved":
        return TaskResolved(**_known(TaskResolved, data))
    return EventObserved(**_known(EventObserved, data))


def read_outbox(kind: str, payload: dict[str, Any]) -> OutboxMessage:
    """An outbox row's message; a kind this version does not know is an error, never skipped."""
    if kind == "journey.start":
        return JourneyStart(**_known(JourneyStart, payload))
    if kind == "journey.signal":
        values = _known(JourneySignal, payload)
        values["observation"] = _signal_observation(payload["observation"])
        return JourneySignal(**values)
    if kind == "human.task":
        return HumanTask(**_known(HumanTask, payload))
    raise UnknownOutboxKind(f"unknown outbox kind {kind!r}")


@dataclass(frozen=True)
class JourneyAbout:
    """Which journey an activity works for: its input without the (bulky) spec."""

    decision_id: str
    customer_id: str
    action_id: str
    channel: str
    cost: float = 0.0
    policy_id: str = ""
    budget_period: str | None = None
    correlation_id: str = ""

    @classmethod
    def of(cls, inp: JourneyInput) -> JourneyAbout:
        """The part of a machine input activities need."""
        return cls(
            inp.decision_id,
            inp.customer_id,
            inp.action_id,
            inp.channel,
            inp.cost,
            inp.policy_id,
            inp.budget_period,
            inp.correlation_id,
        )


@dataclass(frozen=True)
class ActInput:
    """Carry out one machine command; then record the journey's state, when given."""

    about: JourneyAbout
    command: Command
    record: dict[str, Any] | None = None


@dataclass(frozen=True)
class RecordInput:
    """Record where a journey stands (the state's JSON form)."""

    decision_id: str
    state: dict[str, Any]
    correlation_id: str = ""

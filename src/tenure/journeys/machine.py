"""The journey state machine: `step(spec, state, observation) -> (state, commands)`, pure.

The machine never does anything itself. It reads an observation (the journey started, an event
arrived, a timer fired, a person resolved a task), moves through the spec until it must pause
(a wait, a human task, an exit), and returns the new state and the commands for the shell to
carry out in order (deliver, grant, open a ticket, create a task, compensate). Times are epoch
seconds handed in by the caller, so the same function drives a Temporal workflow in real time,
a time-skipping test in milliseconds, and the simulator in simulated time.

Every command carries an idempotency key `<decision_id>:<step_id>:<visit>`: the same step
reached again (a loop) gets a new key, the same step replayed after a crash the same one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, assert_never

from tenure.expressions import holds
from tenure.journeys.spec import (
    Branch,
    Compensate,
    Exit,
    Grant,
    Human,
    JourneySpec,
    Send,
    Ticket,
    Wait,
    seconds,
)
from tenure.journeys.spec import (
    Step as StepKind,
)
from tenure.times import iso_from_epoch

# ---------------------------------------------------------------- inputs and observations


@dataclass(frozen=True)
class JourneyInput:
    """What a journey knows from its decision: who, which action, where and what it cost."""

    decision_id: str
    customer_id: str
    action_id: str
    channel: str
    cost: float = 0.0
    policy_id: str = ""
    budget_period: str | None = None  # the budget period the cost was reserved in
    deliver_at: float | None = None  # epoch seconds; a deferred delivery waits until then
    journey: dict[str, Any] = field(default_factory=dict)  # the spec, as it was when decided
    # The event that triggered the decision: the id every log line of this journey carries.
    # (Defaulted, so histories from before it still decode.)
    correlation_id: str = ""


@dataclass(frozen=True)
class Start:
    """The journey begins at `at`."""

    at: float


@dataclass(frozen=True)
class Seen:
    """A customer event reached the journey."""

    at: float
    type: str
    event_id: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TimerFired:
    """The deadline of the pause at `step` (its `visit`-th time) passed."""

    at: float
    step: str
    visit: int


@dataclass(frozen=True)
class Resolved:
    """A person resolved the journey's task with `resolution`."""

    at: float
    task: str
    resolution: str
    by: str = ""


Observation = Start | Seen | TimerFired | Resolved

# ---------------------------------------------------------------- commands


@dataclass(frozen=True)
class Deliver:
    """Send `template` to the customer on `channel`."""

    key: str
    step: str
    channel: str
    template: str
    payload: dict[str, Any]
    first: bool = False  # the decided contact itself (the caps counted it at decision time)
    kind: Literal["deliver"] = "deliver"


@dataclass(frozen=True)
class GrantOffer:
    """Give an offer or points."""

    key: str
    step: str
    offer: str | None
    points: int | None
    kind: Literal["grant"] = "grant"


@dataclass(frozen=True)
class OpenTicket:
    """Open a CRM ticket."""

    key: str
    step: str
    queue: str
    subject: str
    kind: Literal["ticket"] = "ticket"


@dataclass(frozen=True)
class CreateTask:
    """Put a task in front of a person."""

    key: str
    step: str
    queue: str
    reason: str
    due: float
    kind: Literal["task"] = "task"


@dataclass(frozen=True)
class Undo:
    """Revoke the offers granted under `grants` and release `release` of reserved budget."""

    key: str
    step: str
    grants: tuple[str, ...]
    release: float
    kind: Literal["compensate"] = "compensate"


@dataclass(frozen=True)
class ExpireTask:
    """Close a task nobody resolved in time (the journey has moved on)."""

    key: str
    step: str
    task: str
    kind: Literal["expire"] = "expire"


Command = Deliver | GrantOffer | OpenTicket | CreateTask | ExpireTask | Undo

# ---------------------------------------------------------------- state


@dataclass(frozen=True)
class Pause:
    """Where the journey waits: for events, a task, or the deferred start; until `until`."""

    step: str
    visit: int
    until: float
    kind: Literal["wait", "human", "delay"]
    events: tuple[str, ...] = ()
    task: str = ""


@dataclass(frozen=True)
class JourneyState:
    """Everything the machine knows; plain data, so Temporal can query it and tests can compare."""

    status: Literal["new", "running", "completed"] = "new"
    step: str | None = None
    pause: Pause | None = None
    outcome: str | None = None
    visits: dict[str, int] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    seen_ids: tuple[str, ...] = ()
    last_event: dict[str, Any] | None = None
    grants: tuple[str, ...] = ()
    reserved: float = 0.0
    sends: int = 0
    history: tuple[dict[str, Any], ...] = ()

    def to_record(self) -> dict[str, Any]:
        """JSON-ready form (what a query returns and the journeys table keeps)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> JourneyState:
        """Inverse of `to_record`."""
        pause = rec.get("pause")
        return cls(
            **{
                **rec,
                "pause": Pause(**{**pause, "events": tuple(pause.get("events", ()))})
                if pause
                else None,
                "seen_ids": tuple(rec.get("seen_ids", ())),
                "grants": tuple(rec.get("grants", ())),
                "history": tuple(rec.get("history", ())),
            }
        )


class JourneyStuck(RuntimeError):
    """The spec ran more immediate steps in one moment than any valid journey can."""


_MAX_IMMEDIATE = 1000


# ---------------------------------------------------------------- the machine


def step(
    spec: JourneySpec, inp: JourneyInput, state: JourneyState, obs: Observation
) -> tuple[JourneyState, list[Command]]:
    """Apply one observation; return the new state and the commands to carry out in order."""
    if state.status == "completed":
        return state, []
    if state.status == "new" and not isinstance(obs, Start):
        return state, []  # nothing happens before the start
    match obs:
        case Start():
            return _start(spec, inp, state, obs)
        case Seen():
            return _seen(spec, inp, state, obs)
        case TimerFired():
            return _timer_fired(spec, inp, state, obs)
        case Resolved():
            return _resolved(spec, inp, state, obs)
        case _:
            assert_never(obs)


def _start(
    spec: JourneySpec, inp: JourneyInput, state: JourneyState, obs: Start
) -> tuple[JourneyState, list[Command]]:
    if state.status != "new":
        return state, []
    state = dataclasses.replace(state, status="running", reserved=inp.cost)
    if inp.deliver_at is not None and inp.deliver_at > obs.at:
        pause = Pause(step=spec.steps[0].id, visit=0, until=inp.deliver_at, kind="delay")
        return _log(
            dataclasses.replace(state, pause=pause),
            obs.at,
            spec.steps[0].id,
            f"deferred until {iso_from_epoch(inp.deliver_at)} (quiet hours)",
        ), []
    return _run(spec, inp, state, spec.steps[0].id, obs.at, initial=True)


def _seen(
    spec: JourneySpec, inp: JourneyInput, state: JourneyState, obs: Seen
) -> tuple[JourneyState, list[Command]]:
    if obs.event_id in state.seen_ids:
        return state, []
    pause = state.pause
    state = dataclasses.replace(
        state,
        seen={**state.seen, obs.type: state.seen.get(obs.type, 0) + 1},
        seen_ids=(*state.seen_ids, obs.event_id),
        last_event={"type": obs.type, "event_id": obs.event_id, "payload": obs.payload},
    )
    if pause is None or pause.kind != "wait" or obs.type not in pause.events:
        return state, []
    wait: Wait = spec.step(pause.step)
    state = _log(state, obs.at, pause.step, f"{obs.type} arrived ({obs.event_id})")
    target = wait.on.get(obs.type) or wait.next or spec.following(wait.id)
    return _run(spec, inp, dataclasses.replace(state, pause=None), target, obs.at)


def _timer_fired(
    spec: JourneySpec, inp: JourneyInput, state: JourneyState, obs: TimerFired
) -> tuple[JourneyState, list[Command]]:
    pause = state.pause
    if pause is None or (pause.step, pause.visit) != (obs.step, obs.visit):
        return state, []  # a timer of a pause already left
    if pause.kind == "delay":
        state = dataclasses.replace(state, pause=None)
        return _run(spec, inp, state, pause.step, obs.at, initial=True)
    s = spec.step(pause.step)
    state = _log(dataclasses.replace(state, pause=None), obs.at, s.id, "timed out")
    target = s.on_timeout or spec.following(s.id)
    state, commands = _run(spec, inp, state, target, obs.at)
    if pause.kind == "human":
        expire = ExpireTask(f"{pause.task}:expired", s.id, pause.task)
        return state, [expire, *commands]
    return state, commands


def _resolved(
    spec: JourneySpec, inp: JourneyInput, state: JourneyState, obs: Resolved
) -> tuple[JourneyState, list[Command]]:
    pause = state.pause
    if pause is None or pause.kind != "human" or pause.task != obs.task:
        return state, []
    human: Human = spec.step(pause.step)
    by = f" by {obs.by}" if obs.by else ""
    state = _log(
        dataclasses.replace(state, pause=None), obs.at, human.id, f"resolved {obs.resolution!r}{by}"
    )
    target = human.on.get(obs.resolution) or human.next or spec.following(human.id)
    return _run(spec, inp, state, target, obs.at)


def _log(state: JourneyState, at: float, step_id: str, what: str) -> JourneyState:
    return dataclasses.replace(
        state, history=(*state.history, {"at": iso_from_epoch(at), "step": step_id, "what": what})
    )


def _context(inp: JourneyInput, state: JourneyState) -> dict[str, Any]:
    """What a branch expression sees."""
    return {
        "customer_id": inp.customer_id,
        "action_id": inp.action_id,
        "channel": inp.channel,
        "cost": inp.cost,
        "seen": dict(state.seen),
        "last_event": state.last_event,
        "sends": state.sends,
        "visits": dict(state.visits),
        "granted": len(state.grants),
    }


@dataclass(frozen=True)
class _Visit:
    """One arrival at a step: which visit it is, its idempotency key, when, and whether the
    decision itself started this run of steps."""

    visit: int
    key: str
    at: float
    initial: bool


# What carrying out one step gives: the new state, its commands, and either the next step to go
# on to (continue) or None with `paused` set (the machine stops here).
_Done = tuple[JourneyState, list[Command], str | None, bool]


def _carry_out(
    spec: JourneySpec, inp: JourneyInput, state: JourneyState, s: StepKind, v: _Visit
) -> _Done:
    """Carry out one step; every kind is matched, so a new kind cannot be skipped silently."""
    after = s.next or spec.following(s.id)
    match s:
        case Send():
            channel = inp.channel if s.channel == "action" else s.channel
            first = v.initial and state.sends == 0
            deliver = Deliver(v.key, s.id, channel, s.template, dict(s.payload), first)
            state = dataclasses.replace(state, sends=state.sends + 1)
            state = _log(state, v.at, s.id, f"send {s.template!r} on {channel}")
            return state, [deliver], after, False
        case Grant():
            what = f"offer {s.offer!r}" if s.offer else f"{s.points} points"
            state = dataclasses.replace(state, grants=(*state.grants, v.key))
            grant = GrantOffer(v.key, s.id, s.offer, s.points)
            return _log(state, v.at, s.id, f"grant {what}"), [grant], after, False
        case Ticket():
            ticket = OpenTicket(v.key, s.id, s.queue, s.subject)
            return (
                _log(state, v.at, s.id, f"ticket in {s.queue}: {s.subject}"),
                [ticket],
                after,
                False,
            )
        case Compensate():
            return (*_compensate(s, state, v), after, False)
        case Branch():
            ok, error = holds(s.when, _context(inp, state))
            target = s.then if ok else s.else_
            note = f" ({error})" if error else ""
            return (
                _log(state, v.at, s.id, f"branch {s.when!r} is {ok}{note} -> {target}"),
                [],
                target,
                False,
            )
        case Wait():
            until = v.at + seconds(s.timeout or "0s")
            pause = Pause(s.id, v.visit, until, "wait", events=tuple(s.for_))
            what = f"wait for {', '.join(s.for_)} until {iso_from_epoch(until)}"
            return _log(dataclasses.replace(state, pause=pause), v.at, s.id, what), [], None, True
        case Human():
            until = v.at + seconds(s.timeout)
            task = CreateTask(v.key, s.id, s.queue, s.reason or f"journey {spec.id}", until)
            pause = Pause(s.id, v.visit, until, "human", task=v.key)
            what = f"task in {s.queue} until {iso_from_epoch(until)}"
            return (
                _log(dataclasses.replace(state, pause=pause), v.at, s.id, what),
                [task],
                None,
                True,
            )
        case Exit():
            state = _log(state, v.at, s.id, f"exit: {s.outcome}")
            done = dataclasses.replace(state, status="completed", outcome=s.outcome, pause=None)
            return done, [], None, True
        case _:
            assert_never(s)


def _compensate(
    s: Compensate, state: JourneyState, v: _Visit
) -> tuple[JourneyState, list[Command]]:
    grants = state.grants if s.revoke_offer else ()
    release = state.reserved if s.release_budget else 0.0
    state = dataclasses.replace(
        state,
        grants=() if s.revoke_offer else state.grants,
        reserved=0.0 if s.release_budget else state.reserved,
    )
    what = f"compensate: revoke {len(grants)} grant(s), release {release:g}"
    return _log(state, v.at, s.id, what), [Undo(v.key, s.id, grants, release)]


def _run(
    spec: JourneySpec,
    inp: JourneyInput,
    state: JourneyState,
    step_id: str | None,
    at: float,
    initial: bool = False,
) -> tuple[JourneyState, list[Command]]:
    """Carry out immediate steps from `step_id` until one pauses; collect their commands.

    `initial`: these are the steps the decision itself started, whose first send is the contact
    the decision's guardrails already checked and counted. A send after any pause is not.
    """
    commands: list[Command] = []
    for _ in range(_MAX_IMMEDIATE):
        if step_id is None:
            # Validation ends every path in an exit; a spec built around it still ends cleanly.
            return dataclasses.replace(
                state, status="completed", outcome="ended", step=None
            ), commands
        s = spec.step(step_id)
        visit = state.visits.get(s.id, 0) + 1
        state = dataclasses.replace(state, step=s.id, visits={**state.visits, s.id: visit})
        here = _Visit(visit, f"{inp.decision_id}:{s.id}:{visit}", at, initial)
        state, more, step_id, paused = _carry_out(spec, inp, state, s, here)
        commands.extend(more)
        if paused:
            return state, commands
    raise JourneyStuck(f"journey {spec.id!r} ran {_MAX_IMMEDIATE} steps without pausing")


def simulate(
    spec: JourneySpec,
    inp: JourneyInput,
    start_at: float,
    observations: list[Seen | Resolved] = (),  # type: ignore[assignment]
    horizon: float | None = None,
) -> tuple[JourneyState, list[Command]]:
    """Run a journey in simulated time against known future events; all commands, in order.

    Each pause ends at the first observation before its deadline, else at the deadline. This is
    what the Temporal workflow does in real time, and what the simulator and the tests use.
    """
    state, commands = step(spec, inp, JourneyState(), Start(start_at))
    pending = sorted(observations, key=lambda o: o.at)
    while state.status == "running" and state.pause is not None:
        pause = state.pause
        if horizon is not None and pause.until > horizon and not pending:
            break
        if pending and pending[0].at <= pause.until:
            obs: Observation = pending.pop(0)
        else:
            obs = TimerFired(pause.until, pause.step, pause.visit)
        state, more = step(spec, inp, state, obs)
        commands.extend(more)
    return state, commands

"""Journey specs: the steps an intervention takes over days, as a validated YAML document.

A journey is a list of steps, each with an `id` and a `kind`: `send`, `wait`, `branch`, `grant`,
`ticket`, `human`, `compensate` or `exit`. The first step is the start; a step without `next`
continues with the step after it in the list. Validation names the step and the field: an unknown
kind, a reference to a step that does not exist, a step nothing can reach, a wait without a
timeout, an expression that does not parse, a run of steps that can loop without ever waiting.
"""

from __future__ import annotations

import hashlib
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tenure.documents import read_yaml
from tenure.errors import ConfigError
from tenure.expressions import parsed

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


class JourneyError(ConfigError):
    """A journey file that cannot be used; the message names the step and field."""


def seconds(duration: str) -> float:
    """'90s', '15m', '12h', '3d', '2w' -> seconds."""
    m = _DURATION.match(duration)
    if not m:
        raise ValueError(f"duration {duration!r} is not a number followed by s, m, h, d or w")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


class _Step(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    next: str | None = Field(default=None, description="Step after this one (default: the next).")
    note: str = ""

    def targets(self) -> list[str]:
        """Every step id this step can go to (before defaults are filled in)."""
        return [self.next] if self.next else []


def _duration(value: str) -> str:
    seconds(value)
    return value


class Send(_Step):
    """Deliver a message. `channel: action` (the default) uses the channel the decision chose."""

    kind: Literal["send"]
    channel: str = "action"
    template: str = Field(min_length=1)
    payload: dict[str, Any] = Field(default_factory=dict)


class Wait(_Step):
    """Wait for one of `for` event types; `on` maps a type to its own next step."""

    kind: Literal["wait"]
    for_: list[str] = Field(alias="for", min_length=1)
    timeout: str | None = None
    on: dict[str, str] = Field(default_factory=dict)
    on_timeout: str | None = None

    _check_timeout = field_validator("timeout")(lambda cls, v: v if v is None else _duration(v))

    @model_validator(mode="after")
    def _timeout_required(self) -> Wait:
        if self.timeout is None:
            raise ValueError(f"wait step {self.id!r} needs a timeout (e.g. timeout: 3d)")
        unknown = sorted(set(self.on) - set(self.for_))
        if unknown:
            raise ValueError(
                f"wait step {self.id!r}: `on` names {unknown}, which it does not wait for"
            )
        return self

    def targets(self) -> list[str]:
        return [
            *super().targets(),
            *self.on.values(),
            *([self.on_timeout] if self.on_timeout else []),
        ]


class Branch(_Step):
    """Go to `then` when the expression holds, else to `else`."""

    kind: Literal["branch"]
    when: str
    then: str
    else_: str = Field(alias="else")

    _parses = field_validator("when")(lambda cls, value: parsed(value))

    def targets(self) -> list[str]:
        return [self.then, self.else_]


class Grant(_Step):
    """Give the customer an offer (a code or an offer id) or loyalty points."""

    kind: Literal["grant"]
    offer: str | None = None
    points: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one(self) -> Grant:
        if (self.offer is None) == (self.points is None):
            raise ValueError(f"grant step {self.id!r} grants exactly one of `offer` or `points`")
        return self


class Ticket(_Step):
    """Open a ticket in the CRM."""

    kind: Literal["ticket"]
    queue: str = "retention"
    subject: str = Field(min_length=1)


class Human(_Step):
    """Create a task for a person and wait for its resolution; escalate on timeout."""

    kind: Literal["human"]
    queue: str = "retention"
    reason: str = ""
    timeout: str
    on: dict[str, str] = Field(default_factory=dict, description="Resolution -> next step.")
    on_timeout: str | None = None

    _check_timeout = field_validator("timeout")(lambda cls, v: _duration(v))

    def targets(self) -> list[str]:
        return [
            *super().targets(),
            *self.on.values(),
            *([self.on_timeout] if self.on_timeout else []),
        ]


class Compensate(_Step):
    """Undo what the journey gave: revoke its offers and release the budget it reserved."""

    kind: Literal["compensate"]
    revoke_offer: bool = True
    release_budget: bool = True


class Exit(_Step):
    """End the journey with an outcome label."""

    kind: Literal["exit"]
    outcome: str = Field(min_length=1)


Step = Annotated[
    Send | Wait | Branch | Grant | Ticket | Human | Compensate | Exit, Field(discriminator="kind")
]
# Steps that end a run of immediate steps: the machine stops and waits for an observation there.
PAUSING = ("wait", "human", "exit")


class JourneySpec(BaseModel):
    """A journey: its id, a label for people, and its steps (the first is the start)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    label: str = ""
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _graph(self) -> JourneySpec:
        ids = [s.id for s in self.steps]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"step ids must be unique; repeated: {dupes}")
        known = set(ids)
        for i, s in enumerate(self.steps):
            if s.kind != "exit" and not s.targets() and i == len(self.steps) - 1:
                raise ValueError(f"step {s.id!r} is last and has no `next`; end with an exit step")
            for t in s.targets():
                if t not in known:
                    raise ValueError(f"step {s.id!r} goes to unknown step {t!r}")
        reachable = self._reachable()
        unreachable = [i for i in ids if i not in reachable]
        if unreachable:
            raise ValueError(f"unreachable steps (nothing leads to them): {unreachable}")
        self._no_instant_loop()
        return self

    def _edges(self, s: _Step) -> list[str]:
        if isinstance(s, Exit):
            return []
        explicit = s.targets()
        if isinstance(s, Branch):
            return explicit
        default = self.following(s.id)
        edges = list(explicit)
        if s.next is None and default is not None:
            edges.append(default)
        if isinstance(s, Wait | Human) and s.on_timeout is None and default is not None:
            edges.append(default)
        return edges

    def _reachable(self) -> set[str]:
        seen: set[str] = set()
        todo = [self.steps[0].id]
        while todo:
            sid = todo.pop()
            if sid in seen:
                continue
            seen.add(sid)
            todo.extend(self._edges(self.step(sid)))
        return seen

    def _no_instant_loop(self) -> None:
        """A cycle through steps that never pause would spin forever inside one moment."""
        instant = {s.id for s in self.steps if s.kind not in PAUSING}
        state: dict[str, int] = {}

        def visit(sid: str, path: list[str]) -> None:
            state[sid] = 1
            for t in self._edges(self.step(sid)):
                if t not in instant:
                    continue
                if state.get(t) == 1:
                    loop = [*path[path.index(t) :], t] if t in path else [sid, t]
                    raise ValueError(f"steps loop without waiting: {' -> '.join(loop)}")
                if t not in state:
                    visit(t, [*path, t])
            state[sid] = 2

        for sid in sorted(instant):
            if sid not in state:
                visit(sid, [sid])

    def step(self, step_id: str) -> Any:
        """The step with this id."""
        return self._by_id[step_id]

    def following(self, step_id: str) -> str | None:
        """The id of the step listed after this one, or None for the last."""
        i = self._index[step_id]
        return self.steps[i + 1].id if i + 1 < len(self.steps) else None

    @cached_property
    def _by_id(self) -> dict[str, Any]:
        return {s.id: s for s in self.steps}

    @cached_property
    def _index(self) -> dict[str, int]:
        return {s.id: i for i, s in enumerate(self.steps)}

    @cached_property
    def horizon_s(self) -> float:
        """The longest this journey can take: each pause timing out once, plus a day of deferral."""
        pauses = [
            seconds(s.timeout) for s in self.steps if isinstance(s, Wait | Human) and s.timeout
        ]
        return sum(pauses) + 86_400.0

    @cached_property
    def listens(self) -> list[str]:
        """Every event type some wait step of this journey waits for."""
        return sorted({t for s in self.steps if isinstance(s, Wait) for t in s.for_})

    @cached_property
    def content_hash(self) -> str:
        """sha256 of the canonical JSON of the spec: the journey's version."""
        body = orjson.dumps(
            self.model_dump(mode="json", by_alias=True), option=orjson.OPT_SORT_KEYS
        )
        return hashlib.sha256(body).hexdigest()


def parse_journey(data: Any, source: str = "journey") -> JourneySpec:
    """Validate a loaded YAML/JSON document as a journey, with errors naming the step and field."""
    if not isinstance(data, dict):
        raise JourneyError(f"{source}: a journey is a mapping with `id` and `steps`")
    steps = data.get("steps")
    if isinstance(steps, list):
        # YAML 1.1 reads a bare `on:` key as the boolean true; authors mean the field `on`.
        data = {
            **data,
            "steps": [
                {("on" if k is True else k): v for k, v in st.items()}
                if isinstance(st, dict)
                else st
                for st in steps
            ],
        }
    try:
        return JourneySpec.model_validate(data)
    except ValidationError as exc:
        raise JourneyError(f"{source}: invalid journey\n{_explain(exc, data)}") from None


def _explain(exc: ValidationError, data: dict[str, Any]) -> str:
    """Field errors with step indices replaced by step ids, which is what authors know."""
    steps = data.get("steps") if isinstance(data.get("steps"), list) else []
    lines = []
    for e in exc.errors(include_url=False):
        loc = [str(p) for p in e["loc"]]
        where = ".".join(loc) or "(top)"
        if len(loc) >= 2 and loc[0] == "steps" and loc[1].isdigit():
            i = int(loc[1])
            step = steps[i] if i < len(steps) and isinstance(steps[i], dict) else {}
            # pydantic puts the union member's tag in the path; the author wrote `kind`.
            rest = loc[3:] if len(loc) > 2 and loc[2] == step.get("kind") else loc[2:]
            where = f"step {step.get('id', i)!r}" + (f" field {'.'.join(rest)!r}" if rest else "")
        message = e["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def load_journey(path: Path) -> JourneySpec:
    """Read and validate a journey file."""
    return parse_journey(read_yaml(path, "journey", JourneyError), str(path))


# A decision whose action names no journey runs this: deliver on the chosen channel, done.
SINGLE_SEND = JourneySpec.model_validate(
    {
        "id": "single-send",
        "label": "deliver the action once",
        "steps": [
            {"id": "send", "kind": "send", "template": "action"},
            {"id": "sent", "kind": "exit", "outcome": "sent"},
        ],
    }
)

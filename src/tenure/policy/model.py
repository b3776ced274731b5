"""Policy files: YAML validated into an immutable model, versioned by content hash."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tenure.documents import read_yaml
from tenure.errors import ConfigError, field_errors
from tenure.events.envelope import EVENT_TYPES
from tenure.expressions import check
from tenure.features.instants import ACTIVITY_TYPES, Silence
from tenure.features.state import DAY_S


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _condition(value: str | None) -> str | None:
    if value is not None and (problem := check(value)):
        raise ValueError(f"invalid expression {value!r}: {problem}")
    return value


Condition = Annotated[str, AfterValidator(_condition)]


class Trigger(_Model):
    """When a customer is considered: on entering the at-risk band, or on a signal while in it."""

    risk_at_least: float = Field(
        ge=0.0, le=1.0, description="Risk at or above which a customer is at risk."
    )
    on_events: tuple[str, ...] = Field(
        default=(),
        description="Event types that re-trigger a decision while the customer stays at risk.",
    )
    when: Condition | None = Field(
        default=None, description="An extra condition (zen expression) the trigger needs."
    )
    after_silence: tuple[int, ...] = Field(
        default=(),
        description="Silence steps in whole days (e.g. [7, 14, 30] or ['7d', '14d']): the "
        "customer is evaluated that long after their newest event of `silence_of`, when none "
        "came since, and a step re-triggers a decision while they stay at risk.",
    )
    silence_of: tuple[str, ...] = Field(
        default=tuple(sorted(ACTIVITY_TYPES)),
        min_length=1,
        description="Event types whose absence is silence (default: usage and purchase).",
    )

    @field_validator("on_events", "silence_of")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [t for t in value if t not in EVENT_TYPES]
        if unknown:
            raise ValueError(f"unknown event types {unknown}")
        return value

    @field_validator("after_silence", mode="before")
    @classmethod
    def _days(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            return value
        out = []
        for step in value:
            text = step.strip() if isinstance(step, str) else None
            if text is not None and text.endswith("d") and text[:-1].strip().isdigit():
                step = int(text[:-1])
            if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= 3650:
                raise ValueError(
                    f"a silence step is a whole number of days from 1 to 3650, not {step!r}"
                )
            out.append(step)
        if len(set(out)) != len(out):
            raise ValueError("silence steps repeat")
        return tuple(sorted(out))

    def silences(self) -> tuple[Silence, ...]:
        """This trigger's silence timers."""
        types = frozenset(self.silence_of)
        return tuple(Silence(types, days * DAY_S) for days in self.after_silence)

    @functools.cached_property
    def silence_keys(self) -> frozenset[str]:
        """How instants name this trigger's silence timers."""
        return frozenset(s.key for s in self.silences())


class Action(_Model):
    """Something the engine can do for a customer: its cost and its expected effect."""

    id: str = Field(min_length=1, max_length=100)
    channel: str = Field(min_length=1, max_length=50)
    cost: float = Field(ge=0.0, description="Cost of one action, in the value currency.")
    uplift: float = Field(
        ge=0.0,
        le=1.0,
        description="Prior: share of would-be churners this action keeps.",
    )
    journey: str | None = None
    when: Condition | None = Field(
        default=None, description="Condition (zen expression) for this action to be considered."
    )


# Guardrails a policy cannot loosen (ARCHITECTURE, invariant 8). A retention action is marketing,
# so it needs marketing consent on its channel; a policy may lengthen the cooldown, not remove it.
CONSENT_PURPOSE = "marketing"
MIN_COOLDOWN_DAYS = 1.0


class Guardrails(_Model):
    """Limits a policy adds; consent and a minimum cooldown apply whatever it says."""

    cooldown_days: float = Field(
        default=14.0,
        ge=MIN_COOLDOWN_DAYS,
        description="No new intervention this many days after the customer's last one "
        f"(at least {MIN_COOLDOWN_DAYS:g}).",
    )


class Escalation(_Model):
    """Send the customer to a person instead of an automatic action when a condition holds."""

    when: Condition
    queue: str = Field(min_length=1, max_length=100, description="Human task queue.")


class Selection(_Model):
    """How an action is chosen among those the guardrails allow (see policy.experiments)."""

    mode: Literal["best-value", "thompson", "ab"] = "best-value"
    weights: dict[str, float] = Field(
        default_factory=dict, description="ab only: action id -> share (equal when empty)."
    )

    @field_validator("weights")
    @classmethod
    def _shares(cls, value: dict[str, float]) -> dict[str, float]:
        if any(w < 0 for w in value.values()):
            raise ValueError("A/B weights cannot be negative")
        if value and not any(w > 0 for w in value.values()):
            raise ValueError("at least one A/B weight must be positive")
        return value


class SegmentExperiment(_Model):
    """Experiment settings for one customer segment; what is left out is the policy's."""

    control_share: float | None = Field(default=None, ge=0.0, le=0.5)
    control_until: int | None = Field(default=None, ge=0)
    explore_share: float | None = Field(default=None, ge=0.0, le=0.5)
    min_outcomes: int | None = Field(default=None, ge=1)


class Pooling(_Model):
    """How far uplift is expected to differ between segments and between a segment's risk bands
    (prior standard deviations of the log churn ratio): smaller pools more."""

    segment: float = Field(default=0.6, gt=0.0, le=5.0)
    band: float = Field(default=0.25, gt=0.0, le=5.0)


class ExperimentSettings(_Model):
    """What one decision's experiment does: the policy's settings with its segment's overrides."""

    control_share: float = 0.0
    control_until: int = 200
    explore_share: float = 0.0
    min_outcomes: int = 20


class Experiment(_Model):
    """How the policy learns each action's uplift from its own outcomes (see policy.experiments).

    The workspace's control group is always held back; `control_share` holds back more of the
    customers the policy would treat (by the same stable hash), in each segment and risk band, until
    that cell's control group has `control_until` known outcomes. `explore_share` of decisions
    value the actions at an uplift drawn from the posterior instead of its median, so a cell whose
    early outcomes looked bad keeps getting some evidence; the decision records the arm (`explore`
    or `exploit`) and the propensity of its action.
    """

    control_share: float = Field(
        default=0.0,
        ge=0.0,
        le=0.5,
        description="Share of would-be-treated customers held back while a cell is being learned "
        "(the workspace's control group is held back in any case).",
    )
    control_until: int = Field(
        default=200,
        ge=0,
        description="Known control outcomes in a segment and risk band after which only the "
        "workspace's control group is held back there.",
    )
    explore_share: float = Field(
        default=0.0,
        ge=0.0,
        le=0.5,
        description="Share of decisions that value actions at an uplift drawn from the posterior "
        "(Thompson) rather than its median.",
    )
    min_outcomes: int = Field(
        default=20,
        ge=1,
        description="Outcomes an action and the control group each need before the posterior "
        "replaces the action's prior uplift.",
    )
    pooling: Pooling = Pooling()
    segments: dict[str, SegmentExperiment] = Field(
        default_factory=dict,
        description="Overrides per customer segment (features.segment), e.g. a larger "
        "control_share where the effect is small and hard to measure.",
    )

    def settings(self, segment: str | None) -> ExperimentSettings:
        """The settings a customer of `segment` is decided under."""
        base = {k: getattr(self, k) for k in ExperimentSettings.model_fields}
        own = self.segments.get(segment) if segment is not None else None
        if own is not None:
            base.update({k: v for k, v in own.model_dump().items() if v is not None})
        return ExperimentSettings(**base)


class Budget(_Model):
    """Spend a policy may reserve per period (cost is reserved when an action is decided)."""

    amount: float = Field(ge=0.0)
    period: Literal["day", "week", "month", "total"] = "month"

    def period_key(self, at: dt.datetime) -> str:
        """The budget period `at` falls in (UTC)."""
        u = at.astimezone(dt.UTC)
        if self.period == "day":
            return f"{u:%Y-%m-%d}"
        if self.period == "week":
            year, week, _ = u.isocalendar()
            return f"{year}-W{week:02d}"
        return f"{u:%Y-%m}" if self.period == "month" else "total"


class Policy(_Model):
    """A retention policy: who is considered, which actions exist, under which guardrails."""

    id: str = Field(min_length=1, max_length=100)
    label: str = Field(default="", max_length=200)
    trigger: Trigger
    escalations: tuple[Escalation, ...] = Field(
        default=(),
        description="Checked in order once the trigger fires; the first that holds hands the "
        "customer to a person.",
    )
    eligibility: tuple[Condition, ...] = Field(
        default=(),
        description="Conditions (zen expressions) a customer must meet to be considered at all.",
    )
    guardrails: Guardrails = Guardrails()
    budget: Budget | None = None
    selection: Selection = Selection()
    experiment: Experiment = Experiment()
    actions: tuple[Action, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _weights_name_actions(self) -> Policy:
        unknown = sorted(set(self.selection.weights) - {a.id for a in self.actions})
        if unknown:
            raise ValueError(f"selection.weights names unknown actions {unknown}")
        return self

    @field_validator("actions")
    @classmethod
    def _unique(cls, value: tuple[Action, ...]) -> tuple[Action, ...]:
        ids = [a.id for a in value]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate action ids {dupes}")
        return value

    def canonical(self) -> bytes:
        """The policy's canonical JSON: what its content hash is taken over."""
        data = self.model_dump(mode="json")
        if self.experiment == Experiment():
            # A policy that leaves the experiment alone keeps the version it had before the
            # setting existed.
            del data["experiment"]
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)

    @functools.cached_property
    def content_hash(self) -> str:
        """sha256 of the canonical content: the policy's version."""
        # Cached: it is read for every customer in every batch (canary membership, decision ids).
        return hashlib.sha256(self.canonical()).hexdigest()


def parse_policy(data: Any, origin: str = "policy") -> Policy:
    """Validate a policy mapping; errors name the field."""
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{origin} is not a valid policy: {field_errors(exc)}") from None


def load_policy(path: Path) -> Policy:
    """Read and validate a policy YAML file."""
    return parse_policy(read_yaml(path, "policy"), str(path))


DEFAULT_POLICY_YAML = """\
# The default retention policy: used when `tenure run` is given no --policy.
id: retention-default
label: baseline risk threshold
trigger:
  risk_at_least: 0.6
  on_events: [subscription.cancel_requested, payment.failed]
  # Silence is the clearest churn signal: a customer with no usage or purchase for 7, 14 and
  # 30 days is evaluated then, and each step re-triggers a decision while they stay at risk
  # (a win-back within the usual guardrails: consent, cooldown, caps, budget).
  after_silence: [7, 14, 30]
guardrails:
  cooldown_days: 14
actions:
  - id: winback-email
    channel: email
    cost: 0.5
    uplift: 0.04
  - id: retention-push
    channel: push
    cost: 0.1
    uplift: 0.015
  - id: retention-sms-offer
    channel: sms
    cost: 4.0
    uplift: 0.08
    journey: offer-reminder-expiry
"""


def default_policy() -> Policy:
    """The policy shipped with tenure."""
    return parse_policy(yaml.safe_load(DEFAULT_POLICY_YAML), "default policy")

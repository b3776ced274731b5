"""Policy test cases: customer situations and the decision each must get (`tenure policy test`).

A case names a customer's features (over a neutral default), a score (or the baseline scorer on
those features), the policy's memory of the customer, the triggering event and the time, and what
the decision must be. Cases run `decide()` itself, so they test the policy exactly as it will run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from tenure.documents import read_yaml
from tenure.errors import ConfigError, field_errors
from tenure.events.envelope import EVENT_TYPES
from tenure.features.snapshot import Features, snapshot
from tenure.features.state import CustomerState
from tenure.policy.decide import DEFAULT_GUARDRAILS, DecisionMemory, TriggerContext, decide
from tenure.policy.guardrails import GuardrailSettings
from tenure.policy.inputs import DecisionInputs
from tenure.policy.model import Policy
from tenure.scoring.baseline import score as baseline_score
from tenure.scoring.types import Score


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Expectation(_Model):
    """What the decision must be; fields left out are not checked."""

    status: Literal["action", "none", "suppressed", "human", "no-decision"]
    action_id: str | None = None
    guardrail: str | None = None


class Case(_Model):
    """One situation and its expected decision."""

    name: str
    now: AwareDatetime = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    features: dict[str, Any] = Field(default_factory=dict)
    consent: dict[str, bool] = Field(default_factory=dict)
    risk: float | None = Field(default=None, ge=0.0, le=1.0)
    value: float | None = Field(default=None, ge=0.0)
    at_risk_before: bool = False
    last_intervention_at: AwareDatetime | None = None
    trigger: str = "usage"
    in_control_group: bool = False  # cases test the policy; the random holdout is opt-in
    expect: Expectation

    @field_validator("trigger")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in EVENT_TYPES:
            raise ValueError(f"unknown event type {value!r}")
        return value


def _salt_holding(customer_id: str, inside: bool = True) -> str:
    """A control-group salt under which `customer_id` falls in (or, `inside=False`, outside) a 50%
    control group: the largest any setting allows, so a policy's experiment cannot add to it."""
    from tenure.policy.guardrails import in_control_group

    for n in range(1000):
        salt = f"case-{n}"
        settings = GuardrailSettings(control_share=0.5, control_salt=salt)
        if in_control_group(customer_id, settings) == inside:
            return salt
    raise AssertionError("no salt found")  # a 50% share makes this unreachable in practice


class CaseFile(_Model):
    """A file of cases."""

    cases: tuple[Case, ...] = Field(min_length=1)


@dataclass(frozen=True)
class CaseResult:
    """A case and how its decision compared with the expectation."""

    name: str
    passed: bool
    got: dict[str, Any]
    expected: dict[str, Any]


def load_cases(path: Path) -> CaseFile:
    """Read and validate a cases YAML file; errors name the case and field."""
    data = read_yaml(path, "cases")
    try:
        return CaseFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {field_errors(exc)}") from None


def _features(case: Case) -> Features:
    base = snapshot(CustomerState("case"), case.now)
    fields = set(Features.__struct_fields__)
    unknown = sorted(set(case.features) - fields)
    if unknown:
        raise ConfigError(f"case {case.name!r}: unknown features {unknown}")
    return msgspec.structs.replace(base, **case.features, consent=dict(case.consent))


def run_case(
    case: Case, policy: Policy, guardrails: GuardrailSettings = DEFAULT_GUARDRAILS
) -> CaseResult:
    """Decide the case and compare."""
    f = _features(case)
    sc = baseline_score(f)
    if case.risk is not None or case.value is not None:
        sc = Score(
            "case",
            "1",
            case.risk if case.risk is not None else sc.risk,
            case.value if case.value is not None else sc.value,
            sc.contributions,
        )
    memory = DecisionMemory(
        at_risk=case.at_risk_before,
        last_intervention_at=case.last_intervention_at.isoformat()
        if case.last_intervention_at
        else None,
    )
    trigger = TriggerContext(f"case:{case.name}", case.trigger, frozenset({case.trigger}))
    guards = guardrails.model_copy(
        update={
            "control_share": 0.5 if case.in_control_group else 0.0,
            "control_salt": _salt_holding(f.customer_id, case.in_control_group),
        }
    )
    outcome = decide(DecisionInputs(f, sc, memory, trigger, case.now, guards), policy)
    d = outcome.decision
    got = (
        {"status": "no-decision", "action_id": None, "guardrail": None}
        if d is None
        else {
            "status": d.status,
            "action_id": d.action_id,
            "guardrail": d.guardrail,
            "reason": d.reason,
            "risk": sc.risk,
        }
    )
    expected = case.expect.model_dump(exclude_none=True)
    passed = all(got.get(k) == v for k, v in expected.items())
    return CaseResult(case.name, passed, got, expected)


def run_cases(
    cases: CaseFile, policy: Policy, guardrails: GuardrailSettings = DEFAULT_GUARDRAILS
) -> list[CaseResult]:
    """Every case, in file order."""
    return [run_case(c, policy, guardrails) for c in cases.cases]

"""decide(): triggers, guardrails that name themselves, value-based choice, determinism."""

from __future__ import annotations

import dataclasses
import datetime as dt

import msgspec
import pytest

from tenure.errors import ConfigError
from tenure.policy.decide import DecisionMemory, TriggerContext, decide
from tenure.policy.inputs import DecisionInputs
from tenure.policy.model import default_policy, parse_policy
from tenure.scoring.types import Score
from tests.fixtures.policy import NOW, features

POLICY = default_policy()


def risky(risk: float = 0.9, value: float = 600.0) -> Score:
    return Score("test", "1", risk, value, ())


TRIGGER = TriggerContext("e-9", "usage", frozenset({"usage"}))


def test_below_threshold_no_decision_and_rearms() -> None:
    out = decide(
        DecisionInputs(features("email"), risky(0.1), DecisionMemory(at_risk=True), TRIGGER, NOW),
        POLICY,
    )
    assert out.decision is None
    assert out.memory.at_risk is False


def test_entering_the_risk_band_picks_best_expected_net_value() -> None:
    out = decide(
        DecisionInputs(features("email", "sms"), risky(), DecisionMemory(), TRIGGER, NOW), POLICY
    )
    d = out.decision
    assert d is not None and d.status == "action"
    values = {c.action_id: c.expected_net_value for c in d.candidates}
    # sms: 0.9*0.08*600-4 = 39.2 beats email: 0.9*0.04*600-0.5 = 21.1
    assert values["retention-sms-offer"] == pytest.approx(39.2)
    assert d.action_id == "retention-sms-offer"
    assert out.memory.last_intervention_at == d.decided_at


def test_staying_at_risk_without_a_signal_decides_nothing() -> None:
    out = decide(
        DecisionInputs(features("email"), risky(), DecisionMemory(at_risk=True), TRIGGER, NOW),
        POLICY,
    )
    assert out.decision is None


def test_signal_event_retriggers_while_at_risk() -> None:
    signal = TriggerContext("e-10", "payment.failed", frozenset({"payment.failed"}))
    out = decide(
        DecisionInputs(features("email"), risky(), DecisionMemory(at_risk=True), signal, NOW),
        POLICY,
    )
    assert out.decision is not None and "payment.failed" in out.decision.reason


def test_consent_blocks_and_is_named() -> None:
    out = decide(DecisionInputs(features(), risky(), DecisionMemory(), TRIGGER, NOW), POLICY)
    d = out.decision
    assert d is not None and d.status == "suppressed" and d.guardrail == "consent"
    assert "no marketing consent on sms" in d.reason
    assert all(c.blocked_by == "consent" for c in d.candidates)


def test_consent_falls_back_to_the_best_allowed_action() -> None:
    out = decide(DecisionInputs(features("email"), risky(), DecisionMemory(), TRIGGER, NOW), POLICY)
    assert out.decision is not None and out.decision.action_id == "winback-email"


def test_cooldown_blocks_with_the_numbers() -> None:
    last = (NOW - dt.timedelta(days=3)).isoformat()
    out = decide(
        DecisionInputs(
            features("email", "sms"),
            risky(),
            DecisionMemory(at_risk=False, last_intervention_at=last),
            TRIGGER,
            NOW,
        ),
        POLICY,
    )
    d = out.decision
    assert d is not None and d.status == "suppressed" and d.guardrail == "cooldown"
    assert "3.0 days ago" in d.reason and "14 days" in d.reason
    assert out.memory.last_intervention_at == last


def test_no_positive_value_means_no_action() -> None:
    out = decide(
        DecisionInputs(
            features("email", "sms", "push"), risky(0.61, value=1.0), DecisionMemory(), TRIGGER, NOW
        ),
        POLICY,
    )
    assert out.decision is not None and out.decision.status == "none"


def test_cancelled_customers_are_not_targeted() -> None:
    f = features("email", status="cancelled")
    assert (
        decide(DecisionInputs(f, risky(), DecisionMemory(), TRIGGER, NOW), POLICY).decision is None
    )


def test_same_inputs_same_decision() -> None:
    a = decide(DecisionInputs(features("email"), risky(), DecisionMemory(), TRIGGER, NOW), POLICY)
    b = decide(DecisionInputs(features("email"), risky(), DecisionMemory(), TRIGGER, NOW), POLICY)
    assert a == b
    # The id names the policy, the customer and the instant: another instant is another
    # decision, while one instant is one decision whichever event it names, so a second writer
    # or a rerun of the same history cannot decide an instant twice.
    later = NOW + dt.timedelta(days=1)
    c = decide(DecisionInputs(features("email"), risky(), DecisionMemory(), TRIGGER, later), POLICY)
    other = dataclasses.replace(TRIGGER, event_id="e-11")
    d = decide(DecisionInputs(features("email"), risky(), DecisionMemory(), other, NOW), POLICY)
    assert a.decision is not None and c.decision is not None and d.decision is not None
    assert c.decision.decision_id != a.decision.decision_id
    assert d.decision.decision_id == a.decision.decision_id
    assert d.decision.trigger_event_id == "e-11"


def test_policy_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"trigger.risk_at_least"):
        parse_policy(
            {
                "id": "p",
                "trigger": {"risk_at_least": 2},
                "actions": [{"id": "a", "channel": "email", "cost": 1, "uplift": 0.1}],
            }
        )
    with pytest.raises(ConfigError, match=r"duplicate action ids \['a'\]"):
        parse_policy(
            {
                "id": "p",
                "trigger": {"risk_at_least": 0.5},
                "actions": [
                    {"id": "a", "channel": "email", "cost": 1, "uplift": 0.1},
                    {"id": "a", "channel": "sms", "cost": 1, "uplift": 0.1},
                ],
            }
        )


def test_policy_version_is_its_content() -> None:
    same = parse_policy(POLICY.model_dump(mode="json"))
    assert same.content_hash == POLICY.content_hash
    changed = parse_policy({**POLICY.model_dump(mode="json"), "label": "other"})
    assert changed.content_hash != POLICY.content_hash


def test_cooldown_is_per_customer_across_policies() -> None:
    other = parse_policy({**POLICY.model_dump(mode="json"), "id": "another-team"})
    first = decide(
        DecisionInputs(features("email"), risky(), DecisionMemory(), TRIGGER, NOW), POLICY
    )
    assert first.decision is not None and first.decision.status == "action"
    customer = first.memory.into_customer({}, POLICY.id)
    later = NOW + dt.timedelta(days=2)
    second = decide(
        DecisionInputs(
            features("email"),
            risky(),
            DecisionMemory.of_customer(customer, other.id),
            TRIGGER,
            later,
        ),
        other,
    )
    assert second.decision is not None and second.decision.guardrail == "cooldown"
    assert DecisionMemory.of_customer(customer, "third").at_risk is False


def test_a_policy_cannot_loosen_the_guardrails() -> None:
    data = POLICY.model_dump(mode="json")
    with pytest.raises(ConfigError, match="cooldown_days"):
        parse_policy({**data, "guardrails": {"cooldown_days": 0}})
    with pytest.raises(ConfigError, match="consent_purpose"):
        parse_policy({**data, "guardrails": {"consent_purpose": "service"}})


def test_the_example_policy_is_the_built_in_one() -> None:
    from pathlib import Path

    from tenure.policy.model import load_policy

    example = load_policy(Path(__file__).resolve().parents[2] / "examples" / "policy.yaml")
    assert example.content_hash == POLICY.content_hash


def test_conditions_select_the_audience_and_the_actions() -> None:
    data = POLICY.model_dump(mode="json")
    data["eligibility"] = ['features.plan == "pro"']
    data["actions"][2]["when"] = "value > 1000"  # the sms offer only for valuable customers
    policy = parse_policy(data)
    f = features("email", "sms")  # plan "pro"
    out = decide(DecisionInputs(f, risky(value=600), DecisionMemory(), TRIGGER, NOW), policy)
    assert out.decision is not None and out.decision.action_id == "winback-email"
    sms = next(c for c in out.decision.candidates if c.action_id == "retention-sms-offer")
    assert sms.blocked_by == "condition" and "value > 1000" in sms.detail
    rich = decide(DecisionInputs(f, risky(value=5000), DecisionMemory(), TRIGGER, NOW), policy)
    assert rich.decision is not None and rich.decision.action_id == "retention-sms-offer"
    basic = msgspec.structs.replace(f, plan="basic")
    left_out = decide(DecisionInputs(basic, risky(), DecisionMemory(), TRIGGER, NOW), policy)
    assert left_out.decision is None and left_out.memory.at_risk is False


def test_a_bad_expression_fails_the_policy_with_the_field_named() -> None:
    data = POLICY.model_dump(mode="json")
    data["eligibility"] = ["risk >"]
    with pytest.raises(ConfigError, match=r"eligibility\.0.*invalid expression"):
        parse_policy(data)


def test_an_expression_that_cannot_be_evaluated_counts_as_false() -> None:
    data = POLICY.model_dump(mode="json")
    data["eligibility"] = ["features.mean_order_value > 10"]  # None for customers with no orders
    out = decide(
        DecisionInputs(features("email"), risky(), DecisionMemory(), TRIGGER, NOW),
        parse_policy(data),
    )
    assert out.decision is None


def test_escalation_hands_valuable_customers_to_a_person() -> None:
    data = POLICY.model_dump(mode="json")
    data["escalations"] = [{"when": "value > 5000 and risk > 0.8", "queue": "key-accounts"}]
    policy = parse_policy(data)
    out = decide(
        DecisionInputs(features("email"), risky(value=9000), DecisionMemory(), TRIGGER, NOW), policy
    )
    d = out.decision
    assert d is not None and d.status == "human" and d.human_queue == "key-accounts"
    assert d.action_id is None and out.memory.last_intervention_at == d.decided_at
    ordinary = decide(
        DecisionInputs(features("email"), risky(value=600), DecisionMemory(), TRIGGER, NOW), policy
    )
    assert ordinary.decision is not None and ordinary.decision.status == "action"
    # The cooldown still holds for people too.
    later = decide(
        DecisionInputs(
            features("email"),
            risky(value=9000),
            out.memory,
            dataclasses.replace(TRIGGER, event_id="e-2", seen_types=frozenset({"payment.failed"})),
            NOW + dt.timedelta(days=2),
        ),
        policy,
    )
    assert later.decision is not None and later.decision.guardrail == "cooldown"

"""Selection: best-value learns from outcomes, Thompson explores with honest propensities, A/B
splits by weight; every draw is reproducible from the decision's own seed."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import msgspec

from tenure.policy.decide import DecisionMemory, TriggerContext, decide
from tenure.policy.decision import decision_seed
from tenure.policy.experiments import MIN_OUTCOMES, Evidence, ab_arm
from tenure.policy.inputs import DecisionInputs
from tenure.policy.model import default_policy, parse_policy
from tenure.scoring.types import Score
from tests.fixtures.policy import NOW, features

SCORE = Score("t", "1", 0.9, 600.0, ())
ALL = ("email", "sms", "push")


def policy(mode: str, weights: dict[str, float] | None = None):
    data = default_policy().model_dump(mode="json")
    data["selection"] = {"mode": mode, "weights": weights or {}}
    return parse_policy(data)


def run(pol, customer: str = "c-1", evidence: Evidence = Evidence(), consents=ALL):
    f = msgspec.structs.replace(features(*consents), customer_id=customer)
    trigger = TriggerContext(f"e-{customer}", "usage", frozenset({"usage"}))
    return decide(
        DecisionInputs(f, SCORE, DecisionMemory(), trigger, NOW, evidence=evidence), pol
    ).decision


def test_best_value_switches_from_prior_to_posterior_once_learned() -> None:
    # The prior says sms (uplift .08) is best; outcomes say email saves far more.
    few = Evidence({"control": (5, 10), "winback-email": (0, 10)})
    assert run(policy("best-value"), evidence=few).action_id == "retention-sms-offer"
    n = MIN_OUTCOMES * 5
    learned = Evidence(
        {"control": (n // 2, n), "winback-email": (n // 10, n), "retention-sms-offer": (n // 2, n)}
    )
    d = run(policy("best-value"), evidence=learned)
    assert d.action_id == "winback-email" and d.propensity == 1.0
    email = next(c for c in d.candidates if c.action_id == "winback-email")
    # Uplift is the share of would-be churners kept: 1 - 10% / 50%, shrunk a little by the prior.
    assert email.uplift_source == "posterior" and abs(email.uplift - 0.78) < 0.03


def test_thompson_is_reproducible_and_reports_its_propensity() -> None:
    n = MIN_OUTCOMES * 2
    close = Evidence(
        {
            "control": (n // 2, n),
            "winback-email": (n // 2 - 4, n),
            "retention-sms-offer": (n // 2 - 5, n),
            "retention-push": (n // 2 - 4, n),
        }
    )
    pol = policy("thompson")
    decisions = [run(pol, f"c-{i}", close) for i in range(300)]
    assert decisions == [run(pol, f"c-{i}", close) for i in range(300)]
    # (The default 5% control group is held back whatever the selection mode.)
    decisions = [d for d in decisions if d.status == "action"]
    assert len(decisions) > 250
    chosen = Counter(d.action_id for d in decisions)
    assert len(chosen) >= 2  # uncertain arms keep being tried
    assert all(0 < d.propensity <= 1 and d.arm == d.action_id for d in decisions)
    # Propensities are calibrated: an action's mean propensity tracks how often it is chosen.
    for action, count in chosen.items():
        mean = sum(d.propensity for d in decisions if d.action_id == action) / count
        assert abs(mean - count / len(decisions)) < 0.2


def test_ab_splits_by_weight_and_respects_guardrails() -> None:
    pol = policy("ab", {"winback-email": 3, "retention-push": 1, "retention-sms-offer": 0})
    treated = [d for d in (run(pol, f"c-{i}") for i in range(2000)) if d.status == "action"]
    arms = Counter(d.action_id for d in treated)
    assert set(arms) == {"winback-email", "retention-push"}
    assert 0.7 < arms["winback-email"] / len(treated) < 0.8
    d = run(pol, "c-7")
    assert d.propensity in (0.75, 0.25) and d.arm == d.action_id
    arm, _ = ab_arm("c-7", f"ab:{pol.content_hash}", [("winback-email", 3), ("retention-push", 1)])
    blocked = run(pol, "c-7", consents=())
    assert blocked.status == "suppressed" and blocked.guardrail == "consent" and blocked.arm == arm


def test_same_seed_same_draws_across_time() -> None:
    # A decision's draws come from its own seed, derived from its id (policy, customer,
    # instant), never from a clock or a random source: the instant decided again, whenever and
    # by whichever writer (here naming another event), draws the same; the customer's next
    # instant is a decision of its own, with a fresh draw.
    pol = policy("thompson")
    f = features(*ALL)
    trigger = TriggerContext("e-x", "usage", frozenset({"usage"}))
    again = TriggerContext("e-y", "purchase", frozenset({"purchase", "usage"}))
    a = decide(DecisionInputs(f, SCORE, DecisionMemory(), trigger, NOW), pol).decision
    b = decide(DecisionInputs(f, SCORE, DecisionMemory(), again, NOW), pol).decision
    assert a.seed == b.seed and a.action_id == b.action_id and a.propensity == b.propensity
    assert a.seed == decision_seed("c-1", a.decision_id)
    later = [
        decide(
            DecisionInputs(f, SCORE, DecisionMemory(), trigger, NOW + dt.timedelta(days=n)), pol
        ).decision
        for n in range(1, 4)
    ]
    assert len({a.seed, *(d.seed for d in later)}) == 4
    assert all(d.seed == decision_seed("c-1", d.decision_id) for d in later)


def test_a_segment_uses_its_own_evidence_once_it_has_enough() -> None:
    n = MIN_OUTCOMES * 3
    evidence = Evidence(
        {
            "control": (2 * n // 2, 2 * n),
            "winback-email": (n // 10 + n // 2, 2 * n),
            "control|smb": (n // 2, n),
            "winback-email|smb": (n // 10, n),  # in smb: keeps most would-be churners
            "control|consumer": (n // 2, n),
            "winback-email|consumer": (n // 2, n),  # in consumer: no effect
        }
    )
    assert evidence.learned("winback-email")
    smb = evidence.mean_uplift("winback-email", "smb")
    consumer = evidence.mean_uplift("winback-email", "consumer")
    assert smb > 0.6 and abs(consumer) < 0.1  # each segment mostly its own
    # A segment never seen is somewhere between the ones seen, and less sure.
    enterprise = evidence.mean_uplift("winback-email", "enterprise")
    assert consumer < enterprise < smb
    assert (
        evidence.posterior("winback-email", "enterprise")[1]
        > (evidence.posterior("winback-email", "smb")[1])
    )
    assert Evidence.from_record(evidence.to_record()) == evidence

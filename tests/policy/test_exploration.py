"""The policy's experiment settings: partial pooling, exploring decisions with honest propensities,
a larger control group while a cell is learned, and overrides per segment."""

from __future__ import annotations

import json
from collections import Counter

import msgspec
import pytest
from typer.testing import CliRunner

from tenure.cli import app
from tenure.errors import ConfigError
from tenure.policy.decide import DecisionMemory, TriggerContext, decide
from tenure.policy.experiments import Evidence, cell
from tenure.policy.guardrails import GuardrailSettings
from tenure.policy.inputs import DecisionInputs
from tenure.policy.model import default_policy, parse_policy
from tenure.scoring.types import Score
from tests.fixtures.policy import NOW, features

ONE_OFFER = {
    "id": "offer-test",
    "trigger": {"risk_at_least": 0.0},
    "actions": [{"id": "offer", "channel": "email", "cost": 5.0, "uplift": 0.2}],
}
NO_CONTROL = GuardrailSettings(caps=(), quiet_hours=None, control_share=0.0)
SCORE = Score("t", "1", 0.6, 600.0, ())
WHERE = cell("smb", SCORE.risk)


def policy(experiment: dict | None = None, data: dict | None = None):
    return parse_policy({**(data or ONE_OFFER), "experiment": experiment or {}})


def decision(pol, customer: str, evidence: Evidence, segment: str = "smb", guards=NO_CONTROL):
    f = msgspec.structs.replace(
        features("email", "sms", "push"), customer_id=customer, segment=segment
    )
    trigger = TriggerContext(f"e-{customer}", "usage", frozenset({"usage"}))
    return decide(
        DecisionInputs(f, SCORE, DecisionMemory(), trigger, NOW, guards, evidence=evidence), pol
    ).decision


def doubtful(action: str = "offer") -> Evidence:
    """The offer looked slightly harmful in this cell on few outcomes: greedy would never act."""
    return Evidence(
        {
            "control": (30, 60),
            action: (33, 60),
            f"control|{WHERE}": (30, 60),
            f"{action}|{WHERE}": (33, 60),
        }
    )


def test_experiment_settings_are_validated_and_in_the_schema() -> None:
    with pytest.raises(ConfigError, match="explore_share"):
        policy({"explore_share": 0.9})
    with pytest.raises(ConfigError, match="segments"):
        policy({"segments": {"enterprise": {"explore": 0.1}}})  # unknown setting
    schema = CliRunner().invoke(app, ["policy", "schema"])
    assert schema.exit_code == 0
    defs = json.loads(schema.stdout)["$defs"]
    assert {"control_share", "control_until", "explore_share", "min_outcomes", "segments"} <= set(
        defs["Experiment"]["properties"]
    )


def test_segment_overrides_fall_back_to_the_policy() -> None:
    enterprise = {"explore_share": 0.3, "min_outcomes": 9}
    pol = policy({"explore_share": 0.1, "segments": {"enterprise": enterprise}})
    ent, smb, none = (pol.experiment.settings(s) for s in ("enterprise", "smb", None))
    assert (ent.explore_share, ent.min_outcomes, ent.control_until) == (0.3, 9, 200)
    assert (smb.explore_share, smb.min_outcomes) == (0.1, 20)
    assert none == smb


def test_a_policy_without_experiment_keeps_its_version() -> None:
    plain = default_policy()
    assert b'"experiment"' not in plain.canonical()
    data = plain.model_dump(mode="json")
    assert parse_policy(data).content_hash == plain.content_hash
    data["experiment"] = {"explore_share": 0.1}
    assert parse_policy(data).content_hash != plain.content_hash


def test_pooling_keeps_a_noisy_cell_near_its_segment() -> None:
    # Low-risk enterprise customers: few churners, so one lucky run says the offer keeps most of
    # them; mid-risk enterprise, with many outcomes, says it barely works.
    evidence = Evidence(
        {
            "control": (212, 500),
            "offer": (560, 1300),
            "control|enterprise/mid": (200, 400),
            "offer|enterprise/mid": (550, 1200),
            "control|enterprise/low": (12, 100),
            "offer|enterprise/low": (10, 100),
        }
    )
    raw = 1 - (10 / 100) / (12 / 100)
    pooled = evidence.mean_uplift("offer", "enterprise/low")
    mid = evidence.mean_uplift("offer", "enterprise/mid")
    assert abs(mid - (1 - (550 / 1200) / (200 / 400))) < 0.02  # a well-measured cell speaks
    assert abs(pooled - mid) < abs(raw - mid) / 2  # a noisy one is told by its segment
    # A cell with no outcomes of its own takes its segment's.
    assert abs(evidence.mean_uplift("offer", "enterprise/high") - mid) < 0.03
    # The posterior narrows as outcomes come in.
    assert (
        evidence.posterior("offer", "enterprise/mid")[1]
        < (evidence.posterior("offer", "enterprise/low")[1])
    )


def test_exploring_decisions_try_a_cell_greedy_gave_up_on() -> None:
    greedy = policy()
    assert all(
        decision(greedy, f"c-{i}", doubtful()).status == "none" for i in range(200)
    )  # without exploration the cell never gets evidence again
    pol = policy({"explore_share": 0.2})
    decisions = [decision(pol, f"c-{i}", doubtful()) for i in range(3000)]
    arms = Counter(d.arm for d in decisions)
    assert set(arms) == {"explore", "exploit"} and 0.17 < arms["explore"] / 3000 < 0.23
    acted = [d for d in decisions if d.status == "action"]
    assert acted and all(d.arm == "explore" for d in acted)
    explored = next(d for d in acted)
    offer = next(c for c in explored.candidates if c.action_id == "offer")
    assert offer.uplift_source == "draw" and offer.expected_net_value > 0
    # The propensity is the chance this policy takes the action for this customer: the share of
    # customers in the same situation it acts for.
    mean = sum(d.propensity for d in acted) / len(acted)
    assert min(d.propensity for d in acted) > 0 and max(d.propensity for d in acted) <= 0.2
    assert abs(mean - len(acted) / len(decisions)) < 0.02


def test_exploitation_records_its_propensity_too() -> None:
    n = 400
    works = Evidence({"control": (n // 2, n), "offer": (n // 5, n)})
    pol = policy({"explore_share": 0.1})
    d = decision(pol, "c-1", works)
    assert d.status == "action" and d.arm in ("explore", "exploit")
    # Greedy takes it, and nearly every draw of a well-measured uplift does too.
    assert 0.99 <= d.propensity <= 1.0


def test_propensities_of_several_actions_are_calibrated() -> None:
    data = default_policy().model_dump(mode="json")
    data["trigger"] = {"risk_at_least": 0.0}
    n = 60
    close = Evidence(
        {
            "control": (n // 2, n),
            "winback-email": (n // 2 - 6, n),
            "retention-sms-offer": (n // 2 - 8, n),
            "retention-push": (n // 2 - 5, n),
        }
    )
    pol = policy({"explore_share": 0.5}, data)
    decisions = [decision(pol, f"c-{i}", close) for i in range(3000)]
    acted = [d for d in decisions if d.status == "action"]
    chosen = Counter(d.action_id for d in acted)
    assert len(chosen) >= 2
    for action, count in chosen.items():
        mean = sum(d.propensity for d in acted if d.action_id == action) / count
        assert abs(mean - count / len(decisions)) < 0.05, action
    # The chances of every action and of no action add up to one.
    total = sum(count / len(decisions) for count in chosen.values())
    assert total <= 1.0


def test_exploring_decisions_replay_exactly() -> None:
    pol = policy({"explore_share": 0.3})
    evidence = doubtful()
    first = [decision(pol, f"c-{i}", evidence) for i in range(300)]
    stored = Evidence.from_record(evidence.to_record())
    again = [decision(pol, f"c-{i}", stored) for i in range(300)]
    assert first == again
    assert [d.to_record() for d in first] == [d.to_record() for d in again]
    # The choice to explore is the decision's own: it does not depend on the order of decisions.
    assert list(reversed([decision(pol, f"c-{i}", evidence) for i in reversed(range(300))])) == (
        first
    )


def test_segment_control_share_holds_back_more_until_the_cell_is_learned() -> None:
    pol = policy({"control_share": 0.1, "segments": {"enterprise": {"control_share": 0.4}}})
    guards = GuardrailSettings(caps=(), quiet_hours=None, control_share=0.05)

    def held(segment: str, evidence: Evidence) -> float:
        ds = [decision(pol, f"c-{i}", evidence, segment, guards) for i in range(2000)]
        return sum(d.guardrail == "control_group" for d in ds) / len(ds)

    assert 0.35 < held("enterprise", Evidence()) < 0.45
    assert 0.07 < held("smb", Evidence()) < 0.13
    # Once the cell's control group has enough outcomes, only the workspace's group is held back.
    where = cell("enterprise", SCORE.risk)
    learned = Evidence({f"control|{where}": (100, 200), "control": (100, 200)})
    assert 0.03 < held("enterprise", learned) < 0.07
    # The workspace's control group is inside the larger one: nobody leaves it.
    for i in range(500):
        small = decision(pol, f"c-{i}", learned, "enterprise", guards)
        if small.guardrail == "control_group":
            assert decision(pol, f"c-{i}", Evidence(), "enterprise", guards).guardrail == (
                "control_group"
            )


def test_segment_min_outcomes_keeps_the_prior_longer() -> None:
    n = 60
    evidence = Evidence({"control": (n // 2, n), "offer": (n // 10, n)})
    pol = policy({"segments": {"enterprise": {"min_outcomes": 100}}})
    smb = decision(pol, "c-1", evidence, "smb").candidates[0]
    ent = decision(pol, "c-1", evidence, "enterprise").candidates[0]
    assert smb.uplift_source == "posterior" and ent.uplift_source == "prior"
    assert ent.uplift == 0.2

"""Selection: which allowed candidate a policy takes (best value, Thompson sampling, A/B arm,
or an exploring draw), with the propensity of that choice. Pure; randomness only from the
decision's own seed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tenure.policy.decision import Candidate, Status
from tenure.policy.experiments import PROPENSITY_DRAWS, Evidence, ab_arm, rng_for
from tenure.policy.model import Action, Policy, Pooling
from tenure.scoring.types import Score


def thompson(
    allowed: list[Candidate],
    policy: Policy,
    score: Score,
    evidence: Evidence,
    seed: int,
    segment: str | None,
) -> tuple[Candidate, float]:
    """Choose by drawn uplift; estimate how often this choice would be made (the propensity)."""
    pooling = policy.experiment.pooling
    rng = rng_for(seed)
    costs = {a.id: a.cost for a in policy.actions}

    def draws(size: int | None) -> dict[str, Any]:
        return {
            c.action_id: (
                evidence.draw_uplift(c.action_id, rng, size, segment, pooling)
                if c.uplift_source == "posterior"
                else c.uplift
            )
            for c in allowed
        }

    first = draws(None)
    value = {
        c.action_id: score.risk * first[c.action_id] * score.value - costs[c.action_id]
        for c in allowed
    }
    # The first best in `allowed` order, the same tie-break np.argmax uses for the propensity.
    best = allowed[int(np.argmax([value[c.action_id] for c in allowed]))]
    many = draws(PROPENSITY_DRAWS)
    values = np.array(
        [
            np.broadcast_to(
                score.risk * many[c.action_id] * score.value - costs[c.action_id], PROPENSITY_DRAWS
            )
            for c in allowed
        ]
    )
    wins = np.mean(np.argmax(values, axis=0) == allowed.index(best))
    return best, round(float(wins), 4)


def best_allowed(candidates: list[Candidate]) -> Candidate | None:
    """The action best-value takes among candidates: the best positive value no guardrail blocks."""
    ok = [c for c in candidates if c.blocked_by is None and c.expected_net_value > 0]
    return min(ok, key=lambda c: (-c.expected_net_value, c.action_id)) if ok else None


@dataclass(frozen=True)
class Exploration:
    """Best-value's exploring decisions: actions valued at an uplift drawn from the posterior."""

    evidence: Evidence
    where: str
    pooling: Pooling
    score: Score
    policy: Policy
    candidates: list[Candidate]

    def _uplifts(self, rng: np.random.Generator, size: int | None) -> dict[str, Any]:
        # An action still on its prior has no posterior to draw from: it keeps the prior.
        return {
            c.action_id: (
                self.evidence.draw_uplift(c.action_id, rng, size, self.where, self.pooling)
                if c.uplift_source == "posterior"
                else c.uplift
            )
            for c in self.candidates
        }

    def drawn(self, seed: int) -> list[Candidate]:
        """The candidates valued at one draw (the draw the decision acts on)."""
        rng = rng_for(seed)
        rng.random()  # the draw that chose to explore
        uplifts = self._uplifts(rng, None)
        costs = {a.id: a for a in self.policy.actions}
        out = []
        for c in self.candidates:
            u = round(float(uplifts[c.action_id]), 6)
            source = "draw" if c.uplift_source == "posterior" else c.uplift_source
            value = net_value(costs[c.action_id], self.score, u)
            out.append(replace(c, expected_net_value=value, uplift=u, uplift_source=source))
        return out

    def chance(self, action_id: str, seed: int, acted: bool) -> float:
        """How often an exploring decision takes `action_id`, estimated from further draws.

        `acted`: the decision's own draw took it, and counts as one more draw (so an action
        taken is never reported as impossible).
        """
        rng = rng_for(seed ^ 0x5EED)
        many = self._uplifts(rng, PROPENSITY_DRAWS)
        ok = [c for c in self.candidates if c.blocked_by is None]
        costs = {a.id: a.cost for a in self.policy.actions}
        # Taking no action is worth 0: a draw where every action loses money takes none.
        values = np.zeros((len(ok) + 1, PROPENSITY_DRAWS))
        risk, value = self.score.risk, self.score.value
        for row, c in enumerate(sorted(ok, key=lambda c: c.action_id), start=1):
            values[row] = risk * many[c.action_id] * value - costs[c.action_id]
        names = [None, *sorted(c.action_id for c in ok)]
        if action_id not in names:
            return 0.0
        hits = int(np.count_nonzero(np.argmax(values, axis=0) == names.index(action_id)))
        return (hits + acted) / (PROPENSITY_DRAWS + acted)


def net_value(action: Action, score: Score, uplift: float) -> float:
    """Expected net value of an action: risk x uplift x value, less its cost."""
    return round(score.risk * uplift * score.value - action.cost, 6)


@dataclass(frozen=True)
class Choice:
    """What selection settled on: the status, the action (if any) and why."""

    status: Status
    reason: str
    ranked: tuple[Candidate, ...]  # every candidate, best value first
    chosen: Candidate | None = None
    guardrail: str | None = None
    propensity: float | None = None
    arm: str | None = None
    human_queue: str | None = None
    held_back: bool = False  # in a control group: would have acted, did not


@dataclass(frozen=True)
class _Explored:
    """Best-value's exploring step: the arm, the candidates it values, and its propensity."""

    arm: str | None
    candidates: list[Candidate]
    propensity: float | None


def _explore(
    candidates: list[Candidate],
    policy: Policy,
    score: Score,
    evidence: Evidence,
    seed: int,
    where: str,
    explore_share: float,
) -> _Explored:
    """With an explore share, a seeded draw decides whether this decision values actions at
    uplifts drawn from the posterior; either way the choice's propensity is estimated."""
    if policy.selection.mode != "best-value" or explore_share <= 0:
        return _Explored(None, candidates, None)
    greedy = best_allowed(candidates)
    explore = Exploration(evidence, where, policy.experiment.pooling, score, policy, candidates)
    arm = "exploit"
    if rng_for(seed).random() < explore_share:
        arm, candidates = "explore", explore.drawn(seed)
    drawn_best = best_allowed(candidates)
    if drawn_best is None:
        return _Explored(arm, candidates, None)
    exploit = 1.0 if greedy is not None and greedy.action_id == drawn_best.action_id else 0
    chance = explore.chance(drawn_best.action_id, seed, arm == "explore")
    return _Explored(arm, candidates, (1 - explore_share) * exploit + explore_share * chance)


def _ab(policy: Policy, customer_id: str, ranked: list[Candidate], why: str) -> Choice:
    """A fixed split: the customer's arm is decided by a hash, whatever its value; the
    guardrails still apply to that arm."""
    weights = [
        (a.id, policy.selection.weights.get(a.id, 1.0))
        for a in policy.actions
        if policy.selection.weights.get(a.id, 1.0) > 0
    ]
    # Salted apart from the canary hash, so a canary A/B test still splits its customers.
    arm, share = ab_arm(customer_id, f"ab:{policy.content_hash}", weights)
    pick = next(c for c in ranked if c.action_id == arm)
    if pick.blocked_by is None:
        reason = f"{why}; A/B arm {arm} ({share:.0%} of customers)"
        return Choice("action", reason, tuple(ranked), pick, propensity=share, arm=arm)
    if pick.blocked_by == "condition":
        return Choice("none", f"{why}; A/B arm {arm}: {pick.detail}", tuple(ranked), arm=arm)
    reason = f"{why}; A/B arm {arm}: {pick.detail}"
    return Choice("suppressed", reason, tuple(ranked), guardrail=pick.blocked_by, arm=arm)


def choose(
    candidates: list[Candidate],
    policy: Policy,
    score: Score,
    evidence: Evidence,
    seed: int,
    where: str,
    explore_share: float,
    customer_id: str,
    why: str,
) -> Choice:
    """The policy's selection over screened candidates."""
    explored = _explore(candidates, policy, score, evidence, seed, where, explore_share)
    # Best value first; ties broken by action id so the choice never depends on file order.
    ranked = sorted(explored.candidates, key=lambda c: (-c.expected_net_value, c.action_id))
    # An action whose own condition fails is not a candidate at all (unlike a guardrail block,
    # it does not make the decision "suppressed"); it stays in the record with the reason.
    positive = [c for c in ranked if c.expected_net_value > 0 and c.blocked_by != "condition"]
    allowed = [c for c in positive if c.blocked_by is None]
    arm, all_ = explored.arm, tuple(ranked)
    if policy.selection.mode == "ab":
        return _ab(policy, customer_id, ranked, why)
    if allowed and policy.selection.mode == "thompson":
        chosen, p = thompson(allowed, policy, score, evidence, seed, where)
        reason = f"{why}; Thompson sampling chose {chosen.action_id} ({p:.0%} of draws choose it)"
        return Choice("action", reason, all_, chosen, propensity=p, arm=chosen.action_id)
    if allowed and arm == "explore":
        chosen, p = allowed[0], round(explored.propensity or 0.0, 4)
        reason = (
            f"{why}; exploring: best net value {chosen.expected_net_value:.2f} at an uplift drawn "
            f"from the posterior (propensity {p:.1%})"
        )
        return Choice("action", reason, all_, chosen, propensity=p, arm=arm)
    if allowed:
        chosen = allowed[0]
        p = 1.0 if explored.propensity is None else round(explored.propensity, 4)
        reason = f"{why}; best expected net value {chosen.expected_net_value:.2f}"
        return Choice("action", reason, all_, chosen, propensity=p, arm=arm)
    if positive:
        reason = f"{why}; {positive[0].detail}"
        return Choice("suppressed", reason, all_, guardrail=positive[0].blocked_by, arm=arm)
    if all(c.blocked_by == "condition" for c in ranked):
        return Choice("none", f"{why}; no action's condition holds", all_, arm=arm)
    return Choice("none", f"{why}; no action has a positive expected net value", all_, arm=arm)

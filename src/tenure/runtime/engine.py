"""The composition root: the one place a `Pipeline` is built.

CLI runs, the API, the demo's responses and `policy diff` all ask an `Engine` for their pipeline,
so every path decides with the same workspace (journeys, contracts, tiers, guardrails), the same
scorer and the same learned evidence. Hand-wired copies drifted before: the API decided with
priors where `tenure run` used the evidence it had learned.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from tenure.policy import lift
from tenure.policy.experiments import Evidence
from tenure.policy.lifecycle import PolicySet
from tenure.policy.model import Policy
from tenure.runtime.clock import Clock
from tenure.runtime.pipeline import DEFAULT_BATCH_SIZE, Pipeline
from tenure.scoring.types import Scorer
from tenure.services import policies as policy_registry
from tenure.services.models import scorer_for
from tenure.store import repo
from tenure.store.db import Store
from tenure.store.queries import lift_inputs, segments
from tenure.workspace import Workspace


@dataclass(frozen=True)
class Learned:
    """What the store has learned: the scorer to use, and the decisions and cancellations
    uplift evidence comes from (each pipeline takes evidence from them as of each instant)."""

    scorer: Scorer
    decided: tuple[lift.Decided, ...] = ()
    cancellations: Mapping[str, tuple[dt.datetime, ...]] = field(default_factory=dict)
    segments: Mapping[str, str | None] = field(default_factory=dict)
    observed: dt.datetime | None = None  # the newest event time when it was read

    def history(self) -> lift.History:
        """A history of its own for one pipeline (it grows as the pipeline decides)."""
        return lift.History(
            list(self.decided),
            {cid: list(times) for cid, times in self.cancellations.items()},
            dict(self.segments),
        )

    @property
    def evidence(self) -> Mapping[str, Evidence]:
        """The evidence per policy id as of the newest event."""
        if self.observed is None:
            return {}
        return self.history().evidence_at(self.observed)


def learned(store: Store) -> Learned:
    """The active scorer and what outcomes are learned from."""
    with store.reader() as conn:
        scorer = scorer_for(conn)
        decided, cancels, observed, _ = lift_inputs(conn)
        segment_of = segments(conn, sorted({d.customer_id for d in decided}))
    return Learned(
        scorer,
        tuple(decided),
        {cid: tuple(times) for cid, times in cancels.items()},
        segment_of,
        observed,
    )


class Engine:
    """A workspace and its store, building the pipelines that decide for it."""

    def __init__(self, workspace: Workspace, store: Store) -> None:
        self.workspace = workspace
        self.store = store

    def live_set(self) -> PolicySet:
        """The registry's live policies: active (or the built-in one), canary and shadows."""
        with self.store.reader() as conn:
            return policy_registry.live_set(conn)

    def newest_event(self) -> dt.datetime | None:
        """The newest event time the store has seen (its watermark's), None before any."""
        with self.store.reader() as conn:
            mark = repo.watermark(conn)
        return None if mark is None else dt.datetime.fromtimestamp(mark[0], dt.UTC)

    def pipeline(
        self,
        policy: Policy | PolicySet | None = None,
        *,
        clock: Clock | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        into: Store | None = None,
        knowledge: Learned | None = None,
    ) -> Pipeline:
        """A pipeline deciding with `policy` (default: the live set) into `into` (default: the
        workspace's store), with what the workspace's store has learned unless given."""
        known = knowledge if knowledge is not None else learned(self.store)
        ws = self.workspace
        return Pipeline(
            into or self.store,
            policy if policy is not None else self.live_set(),
            clock=clock,
            batch_size=batch_size,
            scorer=known.scorer,
            guardrails=ws.guardrails,
            history=known.history(),
            journeys=ws.journeys,
            contracts=ws.contracts,
            tiers=ws.tiers,
            lateness_s=ws.settings.lateness_s,
            period_s=ws.settings.period_s,
        )

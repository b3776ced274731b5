"""The batch pipeline: parse, deduplicate, fold features, score, decide, and write it all at once.

Per batch there is one transaction holding the new events, the customers' new states, the
decisions, their audit records, the outbox rows for the effects and the rejects; so a crash loses
a whole batch or nothing, and a rerun of the same input finds every event a duplicate.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from sqlalchemy import Connection

from tenure.audit.chain import chain
from tenure.events.envelope import Event
from tenure.events.parse import Reject
from tenure.events.personal import redacted
from tenure.features.snapshot import Features, snapshot
from tenure.features.state import CustomerState, apply_all
from tenure.journeys.library import JourneyLibrary
from tenure.journeys.spec import JourneyError
from tenure.loyalty.contracts import Contract
from tenure.loyalty.tiers import Tiers
from tenure.observe import tracing
from tenure.observe.logs import enabled, get_logger
from tenure.observe.metrics import BATCH_SECONDS
from tenure.policy.decide import (
    DEFAULT_GUARDRAILS,
    Decision,
    DecisionMemory,
    Outcome,
    TriggerContext,
    decide,
)
from tenure.policy.experiments import NO_EVIDENCE, Evidence
from tenure.policy.guardrails import CONTACT_MEMORY_S, GuardrailSettings
from tenure.policy.lifecycle import PolicySet
from tenure.policy.model import Policy
from tenure.runtime import personal
from tenure.runtime.clock import Clock, EventClock
from tenure.runtime.loyalty import accrue_in, recalc_tiers_in, redeem_in
from tenure.scoring.baseline import BaselineScorer
from tenure.scoring.types import Score, Scorer, explained
from tenure.store import acts, repo
from tenure.store.db import Store

DEFAULT_BATCH_SIZE = 40_000

Known = tuple[CustomerState, dict[str, Any], int]  # state, memory per policy, stored version

log = get_logger("tenure.pipeline")


@dataclass
class _Committed:
    """What a batch wrote, kept until its transaction commits so the lines say what is true."""

    accepted: list[Event] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # event ids (kept when debug is on)
    rejects: list[Reject] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)


@dataclass
class RunSummary:
    """What a run did: the counts add up (read = accepted + duplicates + rejected)."""

    run_id: str
    source: str
    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    decisions: Counter[str] = field(default_factory=Counter)  # by status
    actions: Counter[str] = field(default_factory=Counter)  # by action id
    suppressed: Counter[str] = field(default_factory=Counter)  # by guardrail
    shadow: Counter[str] = field(default_factory=Counter)  # shadow decisions by status
    points_accrued: int = 0  # loyalty points earned under contracts
    points_refused: int = 0  # refused by a contract's caps

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "run_id": self.run_id,
            "source": self.source,
            "read": self.read,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "batches": self.batches,
            "points_accrued": self.points_accrued,
            "points_refused": self.points_refused,
            "decisions": dict(sorted(self.decisions.items())),
            "actions": dict(sorted(self.actions.items())),
            "suppressed": dict(sorted(self.suppressed.items())),
            "shadow": dict(sorted(self.shadow.items())),
        }


@dataclass(frozen=True)
class Perceived:
    """One customer after a batch's events: new state, when and why it is evaluated, its score."""

    state: CustomerState
    trigger: TriggerContext
    now: dt.datetime
    features: Features
    score: Score


@dataclass(frozen=True)
class Decided:
    """One policy's evaluation of one customer: the outcome and, for a decision, its lineage."""

    outcome: Outcome
    lineage: dict[str, Any] | None


def _event_order(e: Event) -> tuple[dt.datetime, str]:
    return e.occurred_at, e.event_id


def shadow_key(policy: Policy) -> str:
    """Where a shadow version keeps its at-risk band in the customer's memory."""
    return f"{policy.id}@{policy.content_hash[:12]}:shadow"


def perceive_many(
    customers: list[tuple[CustomerState, list[Event]]], scorer: Scorer, clock: Clock
) -> list[Perceived]:
    """Fold each customer's new events and score them all at once.

    Each customer is evaluated at its newest event (ties by id), whatever order the batch came
    in; scoring is one call for the whole batch so a model pays its overhead once.
    """
    prepared = []
    for state, events in customers:
        new_state = apply_all(state, events)
        point = max(events, key=_event_order)
        # A late event (older than what the customer already showed) is decided at the
        # customer's newest known time: features never look back from before their own data.
        at = point.occurred_at
        if state.last_seen is not None and state.last_seen > at.timestamp():
            at = dt.datetime.fromtimestamp(state.last_seen, dt.UTC)
        clock.observe(at)
        now = clock.now()
        trigger = TriggerContext(point.event_id, point.type, frozenset(e.type for e in events))
        prepared.append((new_state, trigger, now, snapshot(new_state, now)))
    scores = scorer.score_many([p[3] for p in prepared])
    return [Perceived(*p, sc) for p, sc in zip(prepared, scores, strict=True)]


def decide_many(
    perceived: Sequence[Perceived],
    memories: Sequence[DecisionMemory],
    policy: Policy,
    scorer: Scorer,
    guardrails: GuardrailSettings = DEFAULT_GUARDRAILS,
    budget_spent: dict[str, float] | None = None,
    mode: str = "live",
    evidence: Evidence = NO_EVIDENCE,
) -> list[Decided]:
    """Decide for each customer under one policy, in the order given (sorted by the caller).

    Each action reserves its cost in `budget_spent` (budget period -> amount), updated in place.
    """
    spent = budget_spent if budget_spent is not None else {}
    outcomes: list[Outcome] = []
    spent_before = []
    for p, memory in zip(perceived, memories, strict=True):
        period = policy.budget.period_key(p.now) if policy.budget else ""
        spent_before.append(spent.get(period, 0.0))
        outcome = decide(
            p.features,
            p.score,
            policy,
            memory,
            p.trigger,
            p.now,
            guardrails,
            spent_before[-1],
            mode,
            evidence,
        )
        if policy.budget and outcome.decision is not None and outcome.decision.status == "action":
            spent[period] = spent_before[-1] + outcome.decision.cost
        outcomes.append(outcome)
    # Explanations are made only for customers a decision was made for, all in one call; decide()
    # runs again on the explained score so the decision carries its reasons (same result
    # otherwise: explanations do not enter the choice).
    scores = [p.score for p in perceived]
    decided = [i for i, o in enumerate(outcomes) if o.decision is not None]
    if decided:
        full = explained(
            scorer, [perceived[i].features for i in decided], [scores[i] for i in decided]
        )
        for i, sc in zip(decided, full, strict=True):
            p = perceived[i]
            scores[i] = sc
            outcomes[i] = decide(
                p.features,
                sc,
                policy,
                memories[i],
                p.trigger,
                p.now,
                guardrails,
                spent_before[i],
                mode,
                evidence,
            )
    out = []
    for p, memory, sc, outcome, budget_before in zip(
        perceived, memories, scores, outcomes, spent_before, strict=True
    ):
        lineage = None
        if outcome.decision is not None:
            lineage = {
                "trigger_event_id": p.trigger.event_id,
                "trigger": {
                    "event_id": p.trigger.event_id,
                    "event_type": p.trigger.event_type,
                    "seen_types": sorted(p.trigger.seen_types),
                },
                "now": p.now.isoformat(),
                "features": p.features.to_record(),
                "score": sc.to_record(),
                "scorer": sc.scorer,
                "scorer_version": sc.version,
                "policy_id": policy.id,
                "policy_hash": policy.content_hash,
                "memory_before": memory.to_record(),
                "guardrails": guardrails.model_dump(mode="json"),
                "budget_spent": budget_before,
                "mode": mode,
                "evidence": evidence.to_record(),
            }
        out.append(Decided(outcome, lineage))
    return out


def batched(items: Iterable[Event | Reject], size: int) -> Iterator[list[Event | Reject]]:
    """Group parsed items into batches of at most `size`."""
    batch: list[Event | Reject] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@contextmanager
def _collector_per_batch() -> Iterator[None]:
    """Pause automatic garbage collection for the run (it measured at a fifth of ingest time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def journey_row(outbox_row: dict[str, Any]) -> dict[str, Any]:
    """The journeys-table row of a journey.start outbox row (status pending)."""
    p = outbox_row["payload"]
    at = outbox_row["created_at"]
    return {
        "decision_id": p["decision_id"],
        "customer_id": p["customer_id"],
        "journey_id": p["journey"]["id"],
        "journey_hash": p["journey_hash"],
        "action_id": p["action_id"],
        "channel": p["channel"],
        "status": "pending",
        "listens": p["listens"],
        "sends": [],
        "started_at": at,
        "updated_at": at,
        "ends_by": at + dt.timedelta(seconds=p["journey_horizon_s"]),
    }


def _with_sends(memory: dict[str, Any], sends: list[list[Any]] | None) -> dict[str, Any]:
    """A customer's memory with their journeys' follow-up sends among the contacts the caps count.

    A union, so a send already remembered from an earlier batch is not counted twice.
    """
    if not sends:
        return memory
    contacts = memory.get("contacts") or []
    have = {(int(at), str(ch)) for at, ch in contacts}
    extra = [[int(at), str(ch)] for at, ch in sends if (int(at), str(ch)) not in have]
    return {**memory, "contacts": [*contacts, *extra]} if extra else memory


class Pipeline:
    """Runs parsed input through perceive and decide into the store, a batch at a time."""

    def __init__(
        self,
        store: Store,
        policy: Policy | PolicySet,
        clock: Clock | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        scorer: Scorer | None = None,
        guardrails: GuardrailSettings = DEFAULT_GUARDRAILS,
        evidence: Mapping[str, Evidence] | None = None,
        journeys: JourneyLibrary | None = None,
        contracts: Sequence[Contract] = (),
        tiers: Mapping[str, Tiers] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch size must be at least 1")
        self.store = store
        self.policies = policy if isinstance(policy, PolicySet) else PolicySet(policy)
        self.policy = self.policies.active
        self.clock: Clock = clock or EventClock()
        self.batch_size = batch_size
        self.scorer: Scorer = scorer or BaselineScorer()
        self.guardrails = guardrails
        self.evidence: Mapping[str, Evidence] = evidence or {}
        self.journeys = journeys or JourneyLibrary()
        self.contracts = tuple(contracts)
        self.tiers: Mapping[str, Tiers] = tiers or {}
        # Every action's journey must exist before any customer is decided on.
        for p in self.policies.all():
            for a in p.actions:
                try:
                    self.journeys.get(a.journey)
                except JourneyError as exc:
                    raise JourneyError(f"policy {p.id!r} action {a.id!r}: {exc}") from None
        self._shadow_budget: dict[str, dict[str, float]] = {}
        # Customers this pipeline last wrote, with the version it wrote. A cached entry is used
        # only while the store still holds that version, so another writer can never be undone.
        self._cache: dict[str, Known] = {}
        self._pending: dict[str, Known] = {}
        self._committed = _Committed()

    def _known(self, conn: Connection, ids: list[str]) -> dict[str, Known]:
        """Current state, memory and version of `ids`, decoding from the store only on a miss."""
        versions = repo.customer_versions(conn, ids)
        out: dict[str, Known] = {}
        misses = []
        for cid, version in versions.items():
            cached = self._cache.get(cid)
            if cached is not None and cached[2] == version:
                out[cid] = cached
            else:
                misses.append(cid)
        for cid, (state, memory, version) in repo.load_customers(conn, misses).items():
            out[cid] = (CustomerState.from_record(state), dict(memory or {}), version)
        return out

    def run(
        self,
        items: Iterable[Event | Reject],
        source: str,
        on_batch: Callable[[RunSummary], None] | None = None,
    ) -> RunSummary:
        """Process everything in `items`; returns the run's summary."""
        summary = RunSummary(run_id="r-" + uuid.uuid4().hex[:16], source=source)
        with self.store.transaction() as conn:
            for p in self.policies.all():
                repo.save_policy(conn, p.content_hash, p.id, p.label, p.model_dump(mode="json"))
            repo.start_run(
                conn,
                {"run_id": summary.run_id, "source": source, "started_at": dt.datetime.now(dt.UTC)},
            )
        with _collector_per_batch():
            for batch in batched(items, self.batch_size):
                self._pending = {}
                started = time.perf_counter()
                with tracing.tracer.start_as_current_span("tenure.pipeline.batch") as span:
                    with self.store.transaction() as conn:
                        counts = self._process(conn, batch, summary, span)
                        repo.add_run_counts(conn, summary.run_id, counts)
                    seconds = time.perf_counter() - started
                    BATCH_SECONDS.observe(seconds)
                    if span.is_recording():
                        span.set_attribute("tenure.run_id", summary.run_id)
                        for k, v in counts.items():
                            span.set_attribute(f"tenure.{k}", v)
                    self._log_batch(summary, counts, seconds)
                self._cache.update(self._pending)
                if summary.batches % 10 == 0:
                    # Batches make almost no reference cycles; an occasional collection is enough.
                    gc.collect(1)
                if on_batch is not None:
                    on_batch(summary)
        with self.store.transaction() as conn:
            repo.add_run_counts(conn, summary.run_id, {}, finished_at=dt.datetime.now(dt.UTC))
        return summary

    def _log_batch(self, summary: RunSummary, counts: dict[str, int], seconds: float) -> None:
        """The committed batch's lines: each decision (its correlation id is the event that
        triggered it), each reject, and each event when debugging."""
        done, self._committed = self._committed, _Committed()
        if enabled(logging.DEBUG):
            for e in done.accepted:
                log.debug(
                    "event accepted",
                    correlation_id=e.event_id,
                    event_id=e.event_id,
                    type=e.type,
                    customer_id=e.customer_id,
                )
            for eid in done.duplicates:
                log.debug("event duplicate", correlation_id=eid, event_id=eid)
        for r in done.rejects:
            log.info(
                "event rejected",
                run_id=summary.run_id,
                source=summary.source,
                line_no=r.line_no,
                field=r.field,
                reason=r.reason,
            )
        for d in done.decisions:
            (log.debug if d.mode == "shadow" else log.info)(
                "decision made",
                correlation_id=d.trigger_event_id,
                event_id=d.trigger_event_id,
                decision_id=d.decision_id,
                customer_id=d.customer_id,
                policy_id=d.policy_id,
                mode=d.mode,
                status=d.status,
                action_id=d.action_id,
                channel=d.channel,
                guardrail=d.guardrail,
            )
        log.info(
            "batch committed",
            run_id=summary.run_id,
            source=summary.source,
            duration_ms=round(seconds * 1000, 1),
            **counts,
        )

    def _process(
        self,
        conn: Connection,
        batch: list[Event | Reject],
        summary: RunSummary,
        span: trace.Span = trace.INVALID_SPAN,
    ) -> dict[str, int]:
        decide_started = time.time_ns()
        debug = enabled(logging.DEBUG)
        events: dict[str, Event] = {}
        rejects: list[Reject] = []
        duplicate_ids: list[str] = []
        duplicates = 0
        for item in batch:
            if isinstance(item, Reject):
                rejects.append(item)
            elif item.event_id in events:
                duplicates += 1
                if debug:
                    duplicate_ids.append(item.event_id)
            else:
                events[item.event_id] = item
        existing = repo.existing_event_ids(conn, list(events))
        duplicates += len(existing)
        if debug:
            duplicate_ids.extend(existing)
        by_customer: dict[str, list[Event]] = {}
        event_rows = []
        for eid, e in events.items():
            if eid in existing:
                continue
            by_customer.setdefault(e.customer_id, []).append(e)
            event_rows.append(e)
        customer_ids = sorted(by_customer)
        known = self._known(conn, customer_ids)
        signals, journey_sends, open_journeys = self._journeys_of(conn, customer_ids, by_customer)

        customer_rows, decision_rows, bodies, refs, outbox_rows = [], [], [], [], []
        decisions: list[Decision] = []
        written: dict[str, Known] = {}
        current = [known.get(cid) or (CustomerState(cid), {}, 0) for cid in customer_ids]
        perceived = perceive_many(
            [
                (state, by_customer[cid])
                for cid, (state, _, _) in zip(customer_ids, current, strict=True)
            ],
            self.scorer,
            self.clock,
        )
        memories = [
            _with_sends(mem, journey_sends.get(cid))
            for cid, (_, mem, _) in zip(customer_ids, current, strict=True)
        ]
        # Shadows see the customer as they were before this batch's live decisions.
        before_live = list(memories)
        results: list[list[Decided]] = [[] for _ in customer_ids]
        # Live: each customer under the active policy, or the canary for the canary's share.
        live: dict[str, list[int]] = {}
        for i, cid in enumerate(customer_ids):
            live.setdefault(self.policies.live_for(cid).content_hash, []).append(i)
        for policy in self.policies.live_policies():
            idx = live.get(policy.content_hash, [])
            if not idx:
                continue
            spent = repo.budget_spent(conn, policy.id) if policy.budget else {}
            before = dict(spent)
            mode = "canary" if policy is self.policies.canary else "live"
            got = decide_many(
                [perceived[i] for i in idx],
                [
                    dataclasses.replace(
                        DecisionMemory.of_customer(memories[i], policy.id),
                        open_journeys=open_journeys.get(customer_ids[i], 0),
                    )
                    for i in idx
                ],
                policy,
                self.scorer,
                self.guardrails,
                spent,
                mode,
                self.evidence.get(policy.id, NO_EVIDENCE),
            )
            if policy.budget and spent != before:
                repo.save_budget_spent(conn, policy.id, spent)
            for i, d in zip(idx, got, strict=True):
                memories[i] = d.outcome.memory.into_customer(memories[i], policy.id)
                results[i].append(d)
        # Shadow: the same customers, decided with no effect. A shadow keeps only its own
        # at-risk band, under a key of its own version, so it never re-arms a live policy.
        for policy in self.policies.shadows:
            key = shadow_key(policy)
            got = decide_many(
                perceived,
                [
                    dataclasses.replace(
                        DecisionMemory.of_customer(m, key),
                        open_journeys=open_journeys.get(cid, 0),
                    )
                    for cid, m in zip(customer_ids, before_live, strict=True)
                ],
                policy,
                self.scorer,
                self.guardrails,
                # What a shadow would have reserved, kept for the run (it spends nothing real).
                self._shadow_budget.setdefault(policy.content_hash, {}),
                "shadow",
                self.evidence.get(policy.id, NO_EVIDENCE),
            )
            for i, d in enumerate(got):
                memories[i] = {
                    **memories[i],
                    "at_risk": {**memories[i].get("at_risk", {}), key: d.outcome.memory.at_risk},
                }
                results[i].append(d)
        for i, cid in enumerate(customer_ids):
            state, version = perceived[i].state, current[i][2]
            written[cid] = (state, memories[i], version + 1)
            customer_rows.append(
                {
                    "customer_id": cid,
                    "state": state.to_record(),
                    "memory": memories[i],
                    "last_seen": dt.datetime.fromtimestamp(state.last_seen or 0, dt.UTC),
                    "version": version + 1,
                }
            )
            for d in results[i]:
                decision = d.outcome.decision
                if decision is None:
                    continue
                decisions.append(decision)
                bodies.append(
                    {"kind": "decision", "decision": decision.to_record(), "lineage": d.lineage}
                )
                refs.append(("decision", decision.decision_id))

        if bodies:
            head_seq, head_hash = repo.lock_audit_head(conn)
            records = chain(head_hash, head_seq + 1, bodies)
            repo.append_audit(conn, records, refs)
            traced = span.is_recording()
            for d, rec in zip(decisions, records, strict=True):
                decision_rows.append(_decision_row(d, rec.seq))
                if d.mode == "shadow":
                    summary.shadow[d.status] += 1
                    continue
                if d.status in ("action", "human"):
                    context = _decision_span(d, span, decide_started) if traced else None
                    outbox_rows.append(self._outbox_row(d, context))
                summary.decisions[d.status] += 1
                if d.action_id:
                    summary.actions[d.action_id] += 1
                if d.guardrail:
                    summary.suppressed[d.guardrail] += 1

        # Personal values go to their own table; the event log keeps their digests.
        if any(e.type == "profile.updated" for e in event_rows):
            personal.keep(conn, event_rows)
            repo.insert_events(conn, [redacted(e) for e in event_rows])
        else:
            repo.insert_events(conn, event_rows)
        if event_rows:
            newest = max(e.occurred_at for e in event_rows)
            if self.contracts:
                # Points commit with the events that earned them: a re-fed event is a duplicate.
                accrued = accrue_in(conn, self.contracts, event_rows, newest.timestamp())
                summary.points_accrued += accrued.points
                summary.points_refused += accrued.refused_points
                # Tiers are recalculated on activity: for the members who just earned.
                for programme, rules in self.tiers.items():
                    recalc_tiers_in(
                        conn, programme, rules, self.contracts, sorted(accrued.customers), newest
                    )
            redeem_in(conn, self.contracts, event_rows, newest.timestamp())
        repo.insert_rejects(
            conn,
            [
                {
                    "run_id": summary.run_id,
                    "source": summary.source,
                    "line_no": r.line_no,
                    "field": r.field,
                    "reason": r.reason,
                    "raw": r.raw,
                }
                for r in rejects
            ],
        )
        repo.upsert_customers(conn, customer_rows)
        repo.insert_decisions(conn, decision_rows)
        repo.insert_outbox(conn, outbox_rows + signals)
        # The journey exists from its decision on, so events after it reach it even before the
        # dispatcher has started its workflow.
        acts.insert_journeys(
            conn, [journey_row(r) for r in outbox_rows if r["kind"] == "journey.start"]
        )
        # Only now is the batch certain to commit with these versions; a rollback raises first.
        self._pending = written
        self._committed = _Committed(event_rows, duplicate_ids, rejects, decisions)

        counts = {
            "read": len(batch),
            "accepted": len(event_rows),
            "duplicates": duplicates,
            "rejected": len(rejects),
            "decisions": len(decision_rows),
        }
        summary.read += counts["read"]
        summary.accepted += counts["accepted"]
        summary.duplicates += duplicates
        summary.rejected += counts["rejected"]
        summary.batches += 1
        return counts

    def _journeys_of(
        self, conn: Connection, customer_ids: list[str], by_customer: dict[str, list[Event]]
    ) -> tuple[list[dict[str, Any]], dict[str, list[list[Any]]], Counter[str]]:
        """Signals for the events running journeys wait for, their recent sends, open counts."""
        newest = max((e.occurred_at for evs in by_customer.values() for e in evs), default=None)
        if newest is None:
            return [], {}, Counter()
        since = newest - dt.timedelta(seconds=CONTACT_MEMORY_S)
        signals: list[dict[str, Any]] = []
        sends: dict[str, list[list[Any]]] = {}
        open_journeys: Counter[str] = Counter()
        for row in acts.journeys_of(conn, customer_ids, since):
            if row.sends:
                sends.setdefault(row.customer_id, []).extend(row.sends)
            if row.status not in acts.OPEN_JOURNEY:
                continue
            customer_now = max(e.occurred_at for e in by_customer[row.customer_id])
            if row.ends_by is None or row.ends_by > customer_now:
                # (A journey past its longest duration in event time is over at the latest, also
                # when a replayed history was never dispatched.)
                open_journeys[row.customer_id] += 1
            listens = set(row.listens)
            for e in by_customer[row.customer_id]:
                if e.type not in listens or (
                    row.ends_by is not None and e.occurred_at > row.ends_by
                ):
                    continue
                signals.append(
                    {
                        "idempotency_key": f"{row.decision_id}:{e.event_id}",
                        "decision_id": row.decision_id,
                        "kind": "journey.signal",
                        "payload": {
                            "observation": {
                                "kind": "event",
                                "at": e.occurred_at.timestamp(),
                                "type": e.type,
                                "event_id": e.event_id,
                            },
                            "correlation_id": e.event_id,
                        },
                        "created_at": e.occurred_at,
                        "attempts": 0,
                    }
                )
        return signals, sends, open_journeys

    def _outbox_row(self, d: Decision, trace_context: dict[str, str] | None) -> dict[str, Any]:
        # The triggering event's id follows the decision into the journey and its deliveries
        # (`correlation_id` on their log lines); the decision's trace context, when traced, lets
        # the dispatcher continue the decision's trace.
        observed: dict[str, Any] = {"correlation_id": d.trigger_event_id}
        if trace_context:
            observed["trace"] = trace_context
        if d.status == "human":
            return {
                "idempotency_key": f"{d.decision_id}:human",
                "decision_id": d.decision_id,
                "kind": "human.task",
                "payload": {
                    "decision_id": d.decision_id,
                    "customer_id": d.customer_id,
                    "queue": d.human_queue,
                    "reason": d.reason,
                    "decided_at": d.decided_at,
                    **observed,
                },
                "created_at": dt.datetime.fromisoformat(d.decided_at),
                "attempts": 0,
            }
        policy = self.policies.by_hash[d.policy_hash]
        action = next(a for a in policy.actions if a.id == d.action_id)
        spec = self.journeys.get(action.journey)
        decided = dt.datetime.fromisoformat(d.decided_at)
        return {
            "idempotency_key": f"{d.decision_id}:start",
            "decision_id": d.decision_id,
            "kind": "journey.start",
            "payload": {
                "decision_id": d.decision_id,
                "customer_id": d.customer_id,
                "action_id": d.action_id,
                "channel": d.channel,
                "decided_at": d.decided_at,
                "deliver_at": d.deliver_at,
                "cost": d.cost,
                "policy_id": policy.id,
                "budget_period": policy.budget.period_key(decided) if policy.budget else None,
                "journey": spec.model_dump(mode="json", by_alias=True),
                "journey_hash": spec.content_hash,
                "journey_horizon_s": spec.horizon_s,
                "listens": spec.listens,
                **observed,
            },
            "created_at": dt.datetime.fromisoformat(d.decided_at),
            "attempts": 0,
        }


def _decision_span(d: Decision, batch: trace.Span, started_ns: int) -> dict[str, str]:
    """A trace of the decision's own (linked to its batch's span); its stored context.

    Each decision roots a trace, so its journey and deliveries make one trace per triggering
    event rather than one for every journey a batch of 40,000 events starts. The span covers the
    batch's perceive-and-decide time: decisions are made all at once.
    """
    span = tracing.tracer.start_span(
        "tenure.decision",
        context=otel_context.Context(),
        links=[trace.Link(batch.get_span_context())],
        start_time=started_ns,
        attributes={
            "tenure.correlation_id": d.trigger_event_id,
            "tenure.decision_id": d.decision_id,
            "tenure.customer_id": d.customer_id,
            "tenure.policy_id": d.policy_id,
            "tenure.status": d.status,
            "tenure.action_id": d.action_id or "",
            "tenure.channel": d.channel or "",
        },
    )
    span.end()
    return tracing.carrier(span)


def _decision_row(d: Decision, audit_seq: int) -> dict[str, Any]:
    return {
        "decision_id": d.decision_id,
        "customer_id": d.customer_id,
        "decided_at": dt.datetime.fromisoformat(d.decided_at),
        "status": d.status,
        "action_id": d.action_id,
        "channel": d.channel,
        "guardrail": d.guardrail,
        "reason": d.reason,
        "risk": d.risk,
        "policy_id": d.policy_id,
        "policy_hash": d.policy_hash,
        "trigger_event_id": d.trigger_event_id,
        "mode": d.mode,
        "audit_seq": audit_seq,
        "record": d.to_record(),
    }

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
from tenure.journeys.inputs import (
    EventObserved,
    HumanTask,
    JourneySignal,
    JourneyStart,
    OutboxMessage,
)
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
from tenure.policy.inputs import DecisionInputs
from tenure.policy.lifecycle import PolicySet
from tenure.policy.model import Policy
from tenure.runtime.clock import Clock, EventClock
from tenure.scoring.baseline import BaselineScorer
from tenure.scoring.types import Score, Scorer, explained
from tenure.services.loyalty import accrue_in, recalc_tiers_in, redeem_in
from tenure.store import acts, personal, repo
from tenure.store.acts import journey_row, outbox_row
from tenure.store.db import Store
from tenure.times import parse_instant

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
    inputs: list[DecisionInputs] = []
    for p, memory in zip(perceived, memories, strict=True):
        period = policy.budget.period_key(p.now) if policy.budget else ""
        before = spent.get(period, 0.0)
        inputs.append(
            DecisionInputs(
                p.features, p.score, memory, p.trigger, p.now, guardrails, before, mode, evidence
            )
        )
        outcome = decide(inputs[-1], policy)
        if policy.budget and outcome.decision is not None and outcome.decision.status == "action":
            spent[period] = before + outcome.decision.cost
        outcomes.append(outcome)
    # Explanations are made only for customers a decision was made for, all in one call, and
    # attached to the decision: they do not enter the choice, so decide() need not run again
    # (replay runs it on the explained score from the lineage and gets this same decision).
    decided = [i for i, o in enumerate(outcomes) if o.decision is not None]
    if decided:
        full = explained(
            scorer, [inputs[i].features for i in decided], [inputs[i].score for i in decided]
        )
        for i, sc in zip(decided, full, strict=True):
            inputs[i] = dataclasses.replace(inputs[i], score=sc)
            outcomes[i] = _with_explanation(outcomes[i], sc)
    return [
        Decided(outcome, inp.lineage(policy) if outcome.decision is not None else None)
        for inp, outcome in zip(inputs, outcomes, strict=True)
    ]


def _with_explanation(outcome: Outcome, score: Score) -> Outcome:
    """The outcome with its decision carrying the explained score's reasons."""
    assert outcome.decision is not None
    decision = dataclasses.replace(outcome.decision, explanation=score.contributions)
    return dataclasses.replace(outcome, decision=decision)


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


@dataclass(frozen=True)
class Sorted:
    """A batch sorted out: its new events (input order, and by customer), rejects, duplicates."""

    events: list[Event]
    by_customer: dict[str, list[Event]]
    rejects: list[Reject]
    duplicates: int
    duplicate_ids: list[str]  # kept only when debug logging is on
    locked: list[str] = field(default_factory=list)  # customers locked for the batch


@dataclass
class Evaluation:
    """The batch's customers through perceive and decide (customers in id order)."""

    ids: list[str]
    current: list[Known]  # as stored: state, memory, version
    memories: list[dict[str, Any]]  # updated as each policy decides
    signals: list[dict[str, Any]]  # outbox rows for journeys waiting on these events
    open_journeys: Counter[str]
    perceived: list[Perceived] = field(default_factory=list)
    before_live: list[dict[str, Any]] = field(default_factory=list)
    results: list[list[Decided]] = field(default_factory=list)

    def memory(self, i: int, key: str, customer_memory: dict[str, Any]) -> DecisionMemory:
        """What a policy (by memory key) remembers of customer `i`, with their open journeys."""
        return dataclasses.replace(
            DecisionMemory.of_customer(customer_memory, key),
            open_journeys=self.open_journeys.get(self.ids[i], 0),
        )


@dataclass
class Recorded:
    """The audit's decisions as rows, and the outbox and journey rows of their effects."""

    decision_rows: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    journeys: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class BatchWrite:
    """What one batch writes besides its audit records, all in its one transaction."""

    events: list[Event]
    rejects: list[Reject]
    customers: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    outbox: list[dict[str, Any]]
    journeys: list[dict[str, Any]]
    locked: list[str] = field(default_factory=list)


def _customer_rows(ev: Evaluation) -> list[dict[str, Any]]:
    """Each customer's new state and memory, one version up."""
    rows = []
    for i, cid in enumerate(ev.ids):
        state, version = ev.perceived[i].state, ev.current[i][2]
        rows.append(
            {
                "customer_id": cid,
                "state": state.to_record(),
                "memory": ev.memories[i],
                "last_seen": dt.datetime.fromtimestamp(state.last_seen or 0, dt.UTC),
                "version": version + 1,
            }
        )
    return rows


def _written(ev: Evaluation) -> dict[str, Known]:
    """What the batch wrote per customer, for the cache once it commits."""
    return {
        cid: (ev.perceived[i].state, ev.memories[i], ev.current[i][2] + 1)
        for i, cid in enumerate(ev.ids)
    }


def _tally(summary: RunSummary, d: Decision) -> None:
    if d.mode == "shadow":
        summary.shadow[d.status] += 1
        return
    summary.decisions[d.status] += 1
    if d.action_id:
        summary.actions[d.action_id] += 1
    if d.guardrail:
        summary.suppressed[d.guardrail] += 1


def _reject_row(summary: RunSummary, r: Reject) -> dict[str, Any]:
    return {
        "run_id": summary.run_id,
        "source": summary.source,
        "line_no": r.line_no,
        "field": r.field,
        "reason": r.reason,
        "raw": r.raw,
    }


def _count(read: int, sorted_: Sorted, decisions: int, summary: RunSummary) -> dict[str, int]:
    """The batch's counts, added to the run's (read = accepted + duplicates + rejected)."""
    counts = {
        "read": read,
        "accepted": len(sorted_.events),
        "duplicates": sorted_.duplicates,
        "rejected": len(sorted_.rejects),
        "decisions": decisions,
    }
    summary.read += counts["read"]
    summary.accepted += counts["accepted"]
    summary.duplicates += counts["duplicates"]
    summary.rejected += counts["rejected"]
    summary.batches += 1
    return counts


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
        """One batch, as a short list of named stages, in the caller's transaction."""
        started_ns = time.time_ns()
        sorted_ = self._sort(conn, batch)
        evaluation = self._load(conn, sorted_)
        self._perceive(evaluation, sorted_)
        self._decide_live(conn, evaluation)
        self._decide_shadows(evaluation)
        decisions = [d for ds in evaluation.results for d in ds if d.outcome.decision is not None]
        recorded = self._record(conn, decisions, summary, span, started_ns)
        write = BatchWrite(
            events=sorted_.events,
            rejects=sorted_.rejects,
            customers=_customer_rows(evaluation),
            decisions=recorded.decision_rows,
            outbox=[*recorded.outbox, *evaluation.signals],
            journeys=recorded.journeys,
            locked=sorted_.locked,
        )
        self._write(conn, write, summary)
        # Only now is the batch certain to commit with these versions; a rollback raises first.
        self._pending = _written(evaluation)
        self._committed = _Committed(
            list(sorted_.events),
            sorted_.duplicate_ids,
            sorted_.rejects,
            [d.outcome.decision for d in decisions if d.outcome.decision is not None],
        )
        return _count(len(batch), sorted_, len(write.decisions), summary)

    def _sort(self, conn: Connection, batch: list[Event | Reject]) -> Sorted:
        """Split a batch into new events by customer, rejects and duplicates (within the batch
        and against the event log)."""
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
        # Locked before the duplicate check: a concurrent writer's events for these customers
        # are then either committed (and found here) or not started.
        locked = sorted({e.customer_id for e in events.values()})
        repo.lock_customers(conn, locked)
        existing = repo.existing_event_ids(conn, list(events))
        duplicates += len(existing)
        if debug:
            duplicate_ids.extend(existing)
        by_customer: dict[str, list[Event]] = {}
        fresh = []
        for eid, e in events.items():
            if eid in existing:
                continue
            by_customer.setdefault(e.customer_id, []).append(e)
            fresh.append(e)
        return Sorted(fresh, by_customer, rejects, duplicates, duplicate_ids, locked)

    def _load(self, conn: Connection, sorted_: Sorted) -> Evaluation:
        """The batch's customers as stored, and what their journeys wait for and sent."""
        ids = sorted(sorted_.by_customer)
        known = self._known(conn, ids)
        signals, sends, open_journeys = self._journeys_of(conn, ids, sorted_.by_customer)
        current = [known.get(cid) or (CustomerState(cid), {}, 0) for cid in ids]
        memories = [
            _with_sends(mem, sends.get(cid)) for cid, (_, mem, _) in zip(ids, current, strict=True)
        ]
        return Evaluation(ids, current, memories, signals, open_journeys)

    def _perceive(self, evaluation: Evaluation, sorted_: Sorted) -> None:
        """Fold each customer's new events into their state and score them all at once."""
        evaluation.perceived = perceive_many(
            [
                (state, sorted_.by_customer[cid])
                for cid, (state, _, _) in zip(evaluation.ids, evaluation.current, strict=True)
            ],
            self.scorer,
            self.clock,
        )
        # Shadows see the customer as they were before this batch's live decisions.
        evaluation.before_live = list(evaluation.memories)
        evaluation.results = [[] for _ in evaluation.ids]

    def _decide_live(self, conn: Connection, ev: Evaluation) -> None:
        """Each customer under the active policy, or under the canary for the canary's share."""
        live: dict[str, list[int]] = {}
        for i, cid in enumerate(ev.ids):
            live.setdefault(self.policies.live_for(cid).content_hash, []).append(i)
        for policy in self.policies.live_policies():
            idx = live.get(policy.content_hash, [])
            if not idx:
                continue
            spent = repo.budget_spent(conn, policy.id) if policy.budget else {}
            before = dict(spent)
            got = decide_many(
                [ev.perceived[i] for i in idx],
                [ev.memory(i, policy.id, ev.memories[i]) for i in idx],
                policy,
                self.scorer,
                self.guardrails,
                spent,
                "canary" if policy is self.policies.canary else "live",
                self.evidence.get(policy.id, NO_EVIDENCE),
            )
            if policy.budget and spent != before:
                repo.save_budget_spent(conn, policy.id, spent)
            for i, d in zip(idx, got, strict=True):
                ev.memories[i] = d.outcome.memory.into_customer(ev.memories[i], policy.id)
                ev.results[i].append(d)

    def _decide_shadows(self, ev: Evaluation) -> None:
        """The same customers, decided with no effect. A shadow keeps only its own at-risk band,
        under a key of its own version, so it never re-arms a live policy."""
        for policy in self.policies.shadows:
            key = shadow_key(policy)
            got = decide_many(
                ev.perceived,
                [ev.memory(i, key, m) for i, m in enumerate(ev.before_live)],
                policy,
                self.scorer,
                self.guardrails,
                # What a shadow would have reserved, kept for the run (it spends nothing real).
                self._shadow_budget.setdefault(policy.content_hash, {}),
                "shadow",
                self.evidence.get(policy.id, NO_EVIDENCE),
            )
            for i, d in enumerate(got):
                at_risk = {**ev.memories[i].get("at_risk", {}), key: d.outcome.memory.at_risk}
                ev.memories[i] = {**ev.memories[i], "at_risk": at_risk}
                ev.results[i].append(d)

    def _record(
        self,
        conn: Connection,
        decided: list[Decided],
        summary: RunSummary,
        span: trace.Span,
        started_ns: int,
    ) -> Recorded:
        """Chain the decisions into the audit; the rows of each and of the effects it starts."""
        recorded = Recorded()
        # A decision id names its policy, customer and trigger: one already stored was made by
        # another writer of the same history, and is not made again.
        ids = [d.outcome.decision.decision_id for d in decided if d.outcome.decision is not None]
        done = repo.existing_decision_ids(conn, ids)
        decided = [
            d for d in decided if d.outcome.decision and d.outcome.decision.decision_id not in done
        ]
        if not decided:
            return recorded
        bodies = []
        for d in decided:
            assert d.outcome.decision is not None
            record = d.outcome.decision.to_record()
            bodies.append({"kind": "decision", "decision": record, "lineage": d.lineage})
        decisions = [d.outcome.decision for d in decided if d.outcome.decision is not None]
        head_seq, head_hash = repo.lock_audit_head(conn)
        records = chain(head_hash, head_seq + 1, bodies)
        repo.append_audit(conn, records, [("decision", d.decision_id) for d in decisions])
        traced = span.is_recording()
        for d, rec in zip(decisions, records, strict=True):
            at = parse_instant(d.decided_at)  # once per decision, for every row that needs it
            recorded.decision_rows.append(_decision_row(d, rec.seq, at))
            _tally(summary, d)
            if d.mode == "shadow" or d.status not in ("action", "human"):
                continue
            context = _decision_span(d, span, started_ns) if traced else None
            message = self._effect(d, context, at)
            recorded.outbox.append(outbox_row(message, _effect_key(d), d.decision_id, at))
            if isinstance(message, JourneyStart):
                recorded.journeys.append(journey_row(message, at))
        return recorded

    def _write(self, conn: Connection, write: BatchWrite, summary: RunSummary) -> None:
        """Everything the batch writes besides the audit, in the same transaction."""
        events = list(write.events)
        # Personal values go to their own table; the event log keeps their digests.
        if any(e.type == "profile.updated" for e in events):
            personal.keep(conn, events)
            repo.insert_events(conn, [redacted(e) for e in events])
        else:
            repo.insert_events(conn, events)
        if events:
            self._loyalty(conn, events, summary)
        repo.insert_rejects(conn, [_reject_row(summary, r) for r in write.rejects])
        repo.upsert_customers(conn, write.customers)
        repo.drop_placeholders(conn, write.locked)
        repo.insert_decisions(conn, write.decisions)
        repo.insert_outbox(conn, write.outbox)
        # The journey exists from its decision on, so events after it reach it even before the
        # dispatcher has started its workflow.
        acts.insert_journeys(conn, write.journeys)

    def _loyalty(self, conn: Connection, events: list[Event], summary: RunSummary) -> None:
        """Points commit with the events that earned them: a re-fed event is a duplicate."""
        newest = max(e.occurred_at for e in events)
        if self.contracts:
            accrued = accrue_in(conn, self.contracts, events, newest.timestamp())
            summary.points_accrued += accrued.points
            summary.points_refused += accrued.refused_points
            # Tiers are recalculated on activity: for the members who just earned.
            for programme, rules in self.tiers.items():
                recalc_tiers_in(
                    conn, programme, rules, self.contracts, sorted(accrued.customers), newest
                )
        redeem_in(conn, self.contracts, events, newest.timestamp())

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
                seen = EventObserved(e.occurred_at.timestamp(), e.type, e.event_id)
                signals.append(
                    outbox_row(
                        JourneySignal(seen, correlation_id=e.event_id),
                        f"{row.decision_id}:{e.event_id}",
                        row.decision_id,
                        e.occurred_at,
                    )
                )
        return signals, sends, open_journeys

    def _effect(
        self, d: Decision, trace_context: dict[str, str] | None, decided: dt.datetime
    ) -> OutboxMessage:
        """What the decision asks the act layer to do: start its journey, or open a task.

        The triggering event's id follows the decision into the journey and its deliveries
        (`correlation_id` on their log lines); the decision's trace context, when traced, lets
        the dispatcher continue the decision's trace.
        """
        trace_context = trace_context or None
        if d.status == "human":
            return HumanTask(
                d.decision_id,
                d.customer_id,
                d.human_queue,
                d.reason,
                d.decided_at,
                d.trigger_event_id,
                trace_context,
            )
        policy = self.policies.by_hash[d.policy_hash]
        action = next(a for a in policy.actions if a.id == d.action_id)
        spec = self.journeys.get(action.journey)
        return JourneyStart(
            decision_id=d.decision_id,
            customer_id=d.customer_id,
            action_id=d.action_id or "",
            channel=d.channel or "",
            decided_at=d.decided_at,
            journey=spec.model_dump(mode="json", by_alias=True),
            journey_hash=spec.content_hash,
            journey_horizon_s=spec.horizon_s,
            listens=list(spec.listens),
            cost=d.cost,
            deliver_at=d.deliver_at,
            policy_id=policy.id,
            budget_period=policy.budget.period_key(decided) if policy.budget else None,
            correlation_id=d.trigger_event_id,
            trace=trace_context,
        )


def _effect_key(d: Decision) -> str:
    """The outbox idempotency key of a decision's effect."""
    return f"{d.decision_id}:human" if d.status == "human" else f"{d.decision_id}:start"


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


def _decision_row(d: Decision, audit_seq: int, decided: dt.datetime) -> dict[str, Any]:
    return {
        "decision_id": d.decision_id,
        "customer_id": d.customer_id,
        "decided_at": decided,
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

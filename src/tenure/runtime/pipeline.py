"""The batch pipeline: parse, deduplicate, fold features, score, decide, and write it all at once.

Per batch there is one transaction holding the new events, the customers' new states, the
decisions, their audit records, the outbox rows for the effects and the rejects; so a crash loses
a whole batch or nothing, and a rerun of the same input finds every event a duplicate.

A batch is only how input arrived. Customers are decided at instants fixed by event time and
policy (features/instants.py): each batch moves the watermark, and every instant it passes, of
the batch's customers and of customers due by their stored timers, is decided in time order
across customers. So the same history gives the same decisions whatever the batch size.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import gc
import itertools
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec
from opentelemetry import context as otel_context
from opentelemetry import trace
from sqlalchemy import Connection

from tenure.audit.chain import chain
from tenure.config import DEFAULT_LATENESS_S
from tenure.events.envelope import Event
from tenure.events.parse import Reject
from tenure.events.personal import email_ids, needs_redaction, redacted
from tenure.features.identity import Merge, Resolved, ids_of, resolve
from tenure.features.instants import (
    Advanced,
    Cadence,
    Instant,
    advance,
    event_order,
    seconds,
    split_late,
)
from tenure.features.state import DAY_S, CustomerState, apply_all, merge_states
from tenure.journeys.inputs import (
    EventObserved,
    HumanTask,
    JourneySignal,
    JourneyStart,
    OutboxMessage,
)
from tenure.journeys.library import JourneyLibrary
from tenure.journeys.spec import JourneyError, JourneySpec
from tenure.loyalty.contracts import Contract
from tenure.loyalty.tiers import Tiers
from tenure.observe import tracing
from tenure.observe.logs import enabled, get_logger
from tenure.observe.metrics import BATCH_SECONDS
from tenure.policy import lift
from tenure.policy.decide import (
    DEFAULT_GUARDRAILS,
    Decision,
    DecisionMemory,
    Outcome,
    TriggerContext,
    decide,
    settled_band,
    trigger_of,
)
from tenure.policy.experiments import NO_EVIDENCE, Evidence
from tenure.policy.guardrails import CONTACT_MEMORY_S, GuardrailSettings
from tenure.policy.inputs import DecisionInputs
from tenure.policy.lifecycle import PolicySet
from tenure.policy.model import Policy
from tenure.runtime.clock import Clock, EventClock
from tenure.scoring.baseline import BaselineScorer
from tenure.scoring.types import BriefScorer, Score, Scorer, explained
from tenure.services.loyalty import accrue_in, move_points_in, recalc_tiers_in, redeem_in
from tenure.store import acts, personal, repo
from tenure.store.acts import journey_row, outbox_row
from tenure.store.db import Store, retryable
from tenure.times import from_epoch, iso, parse_instant

DEFAULT_BATCH_SIZE = 40_000
# Customers a pipeline keeps in memory between batches (their state as written): enough for the
# customers of a few batches, bounded so a large workspace's memory does not grow without end.
CACHED_CUSTOMERS = 50_000
# How many times a batch PostgreSQL aborted to break a deadlock runs again (`_transaction`).
RETRIES = 5

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
    late: int = 0  # accepted behind the watermark: they update state, never past decisions
    instants: int = 0  # customer instants decided (period closes and silence timers)
    on_silence: int = 0  # live decisions a silence timer triggered
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
            "late": self.late,
            "instants": self.instants,
            "on_silence": self.on_silence,
            "points_accrued": self.points_accrued,
            "points_refused": self.points_refused,
            "decisions": dict(sorted(self.decisions.items())),
            "actions": dict(sorted(self.actions.items())),
            "suppressed": dict(sorted(self.suppressed.items())),
            "shadow": dict(sorted(self.shadow.items())),
        }


@dataclass(frozen=True, slots=True)
class Held:
    """One customer as the store (or this pipeline's cache) holds them."""

    state: CustomerState
    memory: dict[str, Any]
    version: int
    through: int  # the state folds the customer's events before this time (epoch s)
    pending: tuple[Event, ...] = ()  # the customer's events at or after `through`, in order


@dataclass(frozen=True, slots=True)
class Decided:
    """One policy's evaluation of one customer at an instant: the outcome and, for a decision,
    its inputs (the lineage is written from them once explanations are attached)."""

    outcome: Outcome
    inputs: DecisionInputs
    policy: Policy

    @property
    def lineage(self) -> dict[str, Any] | None:
        """The audit lineage of the decision (None when no decision was made)."""
        return self.inputs.lineage(self.policy) if self.outcome.decision is not None else None


def shadow_key(policy: Policy) -> str:
    """Where a shadow version keeps its at-risk band (and its budget) in the store."""
    return f"{policy.id}@{policy.content_hash[:12]}:shadow"


def cadence_of(policies: PolicySet, period_s: int = DAY_S) -> Cadence:
    """When the policies' customers are evaluated: each period with events, and every silence
    timer any of the policies names (each policy decides only at its own)."""
    silences = {s for p in policies.all() for s in p.trigger.silences()}
    return Cadence(period_s, tuple(sorted(silences, key=lambda s: (s.step_s, sorted(s.types)))))


def relevant(policy: Policy, instant: Instant) -> bool:
    """Whether `policy` evaluates at `instant`: a period closed, or one of its timers fired."""
    return instant.period or bool(instant.silences & policy.trigger.silence_keys)


def _with_explanations(decided: list[Decided], scorer: Scorer) -> list[Decided]:
    """Decisions with their explained scores, all in one call.

    Explanations are made only for the decisions made, and attached afterwards: they do not
    enter the choice, so decide() need not run again (replay runs it on the explained score
    from the lineage and gets this same decision).
    """
    made = [i for i, d in enumerate(decided) if d.outcome.decision is not None]
    if not made:
        return decided
    full = explained(
        scorer,
        [decided[i].inputs.features for i in made],
        [decided[i].inputs.score for i in made],
    )
    out = list(decided)
    for i, sc in zip(made, full, strict=True):
        d = decided[i]
        assert d.outcome.decision is not None
        decision = dataclasses.replace(d.outcome.decision, explanation=sc.contributions)
        out[i] = Decided(
            dataclasses.replace(d.outcome, decision=decision),
            dataclasses.replace(d.inputs, score=sc),
            d.policy,
        )
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
    identity: Resolved = field(default_factory=lambda: Resolved([]))  # ids merged, sent as


@dataclass(frozen=True, slots=True)
class Window:
    """The stretch of event time a batch decides: instants after `floor`, up to `until`."""

    floor: int  # the watermark before the batch: its instants are decided already
    until: int  # the watermark after it
    newest: int  # the newest event time seen, the batch's included


@dataclass(frozen=True, slots=True)
class JourneyView:
    """What deciding needs of one of a customer's journeys."""

    decision_id: str
    status: str
    listens: frozenset[str]
    started: int  # epoch s
    ends_by: int | None
    new: bool = False  # started by this batch

    def open_at(self, at: int) -> bool:
        """Whether the journey is running at `at` (in event time: a journey past its longest
        duration is over, also when a replayed history was never dispatched)."""
        return (
            self.status in acts.OPEN_JOURNEY
            and self.started <= at
            and (self.ends_by is None or self.ends_by > at)
        )


@dataclass
class Evaluation:
    """The batch's customers (with new events or due) through perceive and decide, in id order."""

    ids: list[str]
    held: list[Held]
    memories: list[dict[str, Any]]  # updated as each instant is decided
    journeys: dict[str, list[JourneyView]]
    advanced: list[Advanced] = field(default_factory=list)
    order: list[tuple[int, int]] = field(default_factory=list)  # (customer, instant) in time order
    risks: list[float] = field(default_factory=list)  # per entry of `order`
    scores: list[Score] = field(default_factory=list)  # per entry, when scored on full features
    decided: list[Decided] = field(default_factory=list)
    late: int = 0
    on_silence: int = 0

    def memory(self, i: int, key: str, customer_memory: dict[str, Any], at: int) -> DecisionMemory:
        """What a policy (by memory key) remembers of customer `i` at `at`, with the journeys
        then running."""
        running = sum(1 for j in self.journeys.get(self.ids[i], ()) if j.open_at(at))
        return dataclasses.replace(
            DecisionMemory.of_customer(customer_memory, key), open_journeys=running
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
    identity: Resolved = field(default_factory=lambda: Resolved([]))


def _newest(state: CustomerState, pending: Sequence[Event]) -> int:
    times = [t for t in (state.last_seen, *(seconds(e) for e in pending[-1:])) if t is not None]
    return max(times) if times else 0


def _merge_in(conn: Connection, merges: Sequence[Merge]) -> None:
    """Move what the store held under each merged id to its survivor, each merge an audit
    record (who joined whom, by which event)."""
    bodies = []
    for m in merges:
        repo.merge_customer(conn, m.previous, m.survivor, m.event.occurred_at, m.event.event_id)
        points = move_points_in(conn, m.previous, m.survivor, m.event.occurred_at.timestamp())
        bodies.append(
            {
                "kind": "customer.merged",
                "customer_id": m.survivor,
                "previous_id": m.previous,
                "event_id": m.event.event_id,
                "points_moved": points,
                "at": iso(m.event.occurred_at),
            }
        )
    seq, head = repo.lock_audit_head(conn)
    refs = [("customer.merged", m.event.event_id) for m in merges]
    repo.append_audit(conn, chain(head, seq + 1, bodies), refs)


def _merged(survivor: Held, previous: Held) -> Held:
    """One customer from two ids' (`previous` merged into `survivor`): both states, both
    memories; the waiting events of both, those before the later `through` folded at once."""
    cid = survivor.state.customer_id
    through = max(survivor.through, previous.through)
    waiting = [
        e if e.customer_id == cid else msgspec.structs.replace(e, customer_id=cid)
        for e in sorted([*survivor.pending, *previous.pending], key=event_order)
    ]
    state = merge_states(survivor.state, previous.state)
    late = [e for e in waiting if seconds(e) < through]
    return Held(
        apply_all(state, late) if late else state,
        DecisionMemory.merged(survivor.memory, previous.memory),
        survivor.version,
        through,
        tuple(e for e in waiting if seconds(e) >= through),
    )


def _customer_rows(ev: Evaluation) -> list[dict[str, Any]]:
    """Each customer's new state, memory and timer, one version up."""
    rows = []
    for i, cid in enumerate(ev.ids):
        adv, version = ev.advanced[i], ev.held[i].version
        rows.append(
            {
                "customer_id": cid,
                "state": adv.state.to_record(),
                "memory": ev.memories[i],
                "last_seen": from_epoch(_newest(adv.state, adv.pending)),
                "version": version + 1,
                "through_s": adv.through,
                "due_s": adv.due,
            }
        )
    return rows


def _written(ev: Evaluation) -> dict[str, Held]:
    """What the batch wrote per customer, for the cache once it commits."""
    return {
        cid: Held(
            ev.advanced[i].state,
            ev.memories[i],
            ev.held[i].version + 1,
            ev.advanced[i].through,
            tuple(ev.advanced[i].pending),
        )
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
        "input_size": r.size,
        "input_sha256": r.sha256,
    }


def _count(
    read: int, sorted_: Sorted, ev: Evaluation, decisions: int, summary: RunSummary
) -> dict[str, int]:
    """The batch's counts, added to the run's (read = accepted + duplicates + rejected)."""
    counts = {
        "read": read,
        "accepted": len(sorted_.events),
        "duplicates": sorted_.duplicates,
        "rejected": len(sorted_.rejects),
        "decisions": decisions,
        "late": ev.late,
        "instants": len(ev.order),
    }
    summary.read += counts["read"]
    summary.accepted += counts["accepted"]
    summary.duplicates += counts["duplicates"]
    summary.rejected += counts["rejected"]
    summary.late += counts["late"]
    summary.instants += counts["instants"]
    summary.on_silence += ev.on_silence
    summary.batches += 1
    return counts


@dataclass(frozen=True, slots=True)
class _At:
    """One instant being decided: the customer's instant, its score, trigger and time."""

    instant: Instant
    score: Score
    trigger: TriggerContext
    now: dt.datetime
    evidence: Mapping[str, Evidence]


def _settled(
    policy: Policy, key: str, inst: Instant, risk: float, memory: dict[str, Any]
) -> bool | None:
    """The policy's at-risk band after `inst` when nothing can be decided there, else None."""
    return settled_band(
        policy,
        risk,
        inst.brief.subscription_status,
        DecisionMemory.band_of(memory, key),
        inst.seen_types,
        inst.silences,
    )


def _budget(
    conn: Connection,
    budgets: dict[str, dict[str, float]],
    loaded: dict[str, dict[str, float]],
    policy: Policy,
    key: str,
) -> dict[str, float]:
    """What `policy` (its budget kept under `key`) has reserved per period, read once a batch.
    A shadow's is kept under its own key: what it would have spent, never real money."""
    if key not in budgets:
        spent = repo.budget_spent(conn, key) if policy.budget else {}
        loaded[key] = dict(spent)
        budgets[key] = spent
    return budgets[key]


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
        history: lift.History | None = None,
        journeys: JourneyLibrary | None = None,
        contracts: Sequence[Contract] = (),
        tiers: Mapping[str, Tiers] | None = None,
        lateness_s: int = DEFAULT_LATENESS_S,
        period_s: int = DAY_S,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch size must be at least 1")
        self.store = store
        self.policies = policy if isinstance(policy, PolicySet) else PolicySet(policy)
        self.policy = self.policies.active
        # Event time unless a live clock is given: then the wall clock moves the watermark too.
        self.clock: Clock = clock or EventClock()
        self.live = not isinstance(self.clock, EventClock)
        self.batch_size = batch_size
        self.scorer: Scorer = scorer or BaselineScorer()
        self.guardrails = guardrails
        self.history = history or lift.History([], {}, {})
        self.journeys = journeys or JourneyLibrary()
        self.contracts = tuple(contracts)
        self.tiers: Mapping[str, Tiers] = tiers or {}
        self.lateness_s = lateness_s
        self.cadence = cadence_of(self.policies, period_s)
        # Every action's journey must exist before any customer is decided on.
        for p in self.policies.all():
            for a in p.actions:
                try:
                    self.journeys.get(a.journey)
                except JourneyError as exc:
                    raise JourneyError(f"policy {p.id!r} action {a.id!r}: {exc}") from None
        # Customers this pipeline last wrote, with the version it wrote. A cached entry is used
        # only while the store still holds that version, so another writer can never be undone.
        self._cache: dict[str, Held] = {}
        # Each journey spec as its start messages carry it, by content hash: dumped once, not
        # once per decision (a sweep can start a journey for every one of 100,000 customers).
        self._spec_records: dict[str, dict[str, Any]] = {}
        self._step: int | None = None  # a sweep's customers per step (`sweep`)
        self._gone: list[str] = []  # ids the batch merged into others (features/identity.py)
        self._short = False  # the step stopped short of the watermark
        self._pending: dict[str, Held] = {}
        self._committed = _Committed()

    def _held(self, conn: Connection, ids: list[str]) -> list[Held]:
        """Current state, memory, version and waiting events of `ids`, decoding from the store
        only on a miss."""
        versions = repo.customer_versions(conn, ids)
        out: dict[str, Held] = {}
        misses = []
        for cid in ids:
            version = versions.get(cid)
            cached = self._cache.get(cid)
            if version is None:
                out[cid] = Held(CustomerState(cid), {}, 0, 0)
            elif cached is not None and cached.version == version:
                out[cid] = cached
            else:
                misses.append(cid)
        loaded = repo.load_timed_customers(conn, misses)
        through: dict[str, int] = {}
        for cid, (state_rec, memory, version, at) in loaded.items():
            state = CustomerState.from_record(state_rec)
            # A customer stored before time was perceived folds every event it has.
            through[cid] = at if at is not None else (state.last_seen or -1) + 1
            out[cid] = Held(state, dict(memory or {}), version, through[cid])
        for cid, events in repo.pending_events(conn, through).items():
            out[cid] = dataclasses.replace(out[cid], pending=tuple(events))
        return [out[cid] for cid in ids]

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
                self._batch(batch, summary)
                if summary.batches % 10 == 0:
                    # Batches make almost no reference cycles; an occasional collection is enough.
                    gc.collect(1)
                if on_batch is not None:
                    on_batch(summary)
        with self.store.transaction() as conn:
            repo.add_run_counts(conn, summary.run_id, {}, finished_at=dt.datetime.now(dt.UTC))
        return summary

    def sweep(self) -> RunSummary:
        """Decide every instant the watermark has passed with no new event: silence timers and
        the closes of periods whose events came earlier. Live, the wall clock moves the
        watermark, so this is how silent customers are seen. Two sweeps racing on one store
        decide each instant once (customer locks, and decision ids derived from the instant)."""
        summary = RunSummary(run_id="sweep", source="sweep")
        # In steps of the watermark, each deciding about a batch's worth of customers, so a
        # sweep of a million silent customers holds one step in memory, not all of them.
        self._step = self.batch_size
        try:
            with _collector_per_batch():
                while True:
                    self._short = False
                    self._batch([], summary)
                    if not self._short:
                        break
                    gc.collect(1)
        finally:
            self._step = None
        return summary

    def _batch(self, batch: list[Event | Reject], summary: RunSummary) -> None:
        """One batch in its own transaction, counted, traced and logged once committed."""
        started = time.perf_counter()
        with tracing.tracer.start_as_current_span("tenure.pipeline.batch") as span:
            counts = self._transaction(batch, summary, span)
            seconds_taken = time.perf_counter() - started
            BATCH_SECONDS.observe(seconds_taken)
            if span.is_recording():
                span.set_attribute("tenure.run_id", summary.run_id)
                for k, v in counts.items():
                    span.set_attribute(f"tenure.{k}", v)
            self._log_batch(summary, counts, seconds_taken)
        self._remember(self._pending)

    def _transaction(
        self, batch: list[Event | Reject], summary: RunSummary, span: trace.Span
    ) -> dict[str, int]:
        """The batch's transaction; its counts once committed.

        A batch that does not commit leaves nothing behind in this pipeline either: what it
        learned (decisions and cancellations in the uplift history) and counted is rolled back
        with it, so a long-lived pipeline (the API's) decides on as if it never ran. One that
        PostgreSQL aborted to break a deadlock (two writers merging the same ids lock them in
        opposite orders) or could not serialize runs again, up to `RETRIES` times.
        """
        for attempt in itertools.count(1):
            point, before = self.history.savepoint(), copy.deepcopy(summary)
            self._pending = {}
            try:
                with self.store.transaction() as conn:
                    counts = self._process(conn, batch, summary, span)
                    repo.add_run_counts(conn, summary.run_id, counts)
                return counts
            except BaseException as exc:
                self.history.rollback(point)
                for f in dataclasses.fields(summary):
                    setattr(summary, f.name, getattr(before, f.name))
                self._pending, self._gone, self._committed = {}, [], _Committed()
                if attempt > RETRIES or not retryable(exc):
                    raise
                reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
                log.warning("batch retried", run_id=summary.run_id, attempt=attempt, reason=reason)
                time.sleep(min(0.05 * 2**attempt, 1.0))
        raise AssertionError("unreachable")  # itertools.count never ends

    def _remember(self, written: dict[str, Held]) -> None:
        """Keep what a batch wrote for the next ones, the most recently written customers
        first: a workspace of millions would not fit, and a customer not kept is read again."""
        cache = self._cache
        for cid in self._gone:
            cache.pop(cid, None)
        self._gone = []
        for cid, held in written.items():
            cache.pop(cid, None)  # to the end: the newest
            cache[cid] = held
        for cid in list(itertools.islice(cache, max(0, len(cache) - CACHED_CUSTOMERS))):
            del cache[cid]

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
        window, due = self._window(conn, batch)
        sorted_ = self._sort(conn, batch, due)
        evaluation = self._load(conn, sorted_, due, window)
        self._perceive(evaluation, sorted_, window)
        self._decide(conn, evaluation)
        decided = [d for d in evaluation.decided if d.outcome.decision is not None]
        recorded = self._record(conn, decided, summary, span, started_ns)
        write = BatchWrite(
            events=sorted_.events,
            rejects=sorted_.rejects,
            customers=_customer_rows(evaluation),
            decisions=recorded.decision_rows,
            outbox=[*recorded.outbox, *self._signals(evaluation, sorted_)],
            journeys=recorded.journeys,
            locked=sorted_.locked,
            identity=sorted_.identity,
        )
        self._write(conn, write, summary)
        repo.advance_watermark(conn, window.newest, window.until)
        # Only now is the batch certain to commit with these versions; a rollback raises first.
        self._pending = _written(evaluation)
        self._gone = [m.previous for m in sorted_.identity.merges]
        self._committed = _Committed(
            list(sorted_.events),
            sorted_.duplicate_ids,
            sorted_.rejects,
            [d.outcome.decision for d in decided if d.outcome.decision is not None],
        )
        return _count(len(batch), sorted_, evaluation, len(write.decisions), summary)

    def _window(self, conn: Connection, batch: list[Event | Reject]) -> tuple[Window, list[str]]:
        """Where the watermark stands before and after this batch, and who is due by then."""
        mark = repo.watermark(conn)
        times = [seconds(e) for e in batch if isinstance(e, Event)]
        if mark is not None:
            times.append(mark[0])
        floor = mark[1] if mark is not None else 0
        newest = max(times) if times else 0
        until = newest - self.lateness_s if times else floor
        if self.live:
            until = max(until, int(self.clock.now().timestamp()) - self.lateness_s)
        until = max(until, floor)
        if self._step is not None and not batch:
            step = repo.due_step(conn, floor, until, self._step)
            self._short = step < until
            until = max(step, floor)
        return Window(floor, until, newest), repo.due_customers(conn, until)

    def _sort(self, conn: Connection, batch: list[Event | Reject], due: list[str]) -> Sorted:
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
        # Ids resolve through merges (features/identity.py): an event sent with an id merged
        # away counts for the id that survived.
        batch_events, emails = email_ids(list(events.values()))
        names = ids_of(batch_events)
        # Locked (with the customers due) before the duplicate check: a concurrent writer's
        # events for these customers are then either committed (and found here) or not started.
        # Ids are resolved once they are locked, so a merge another writer commits meanwhile is
        # seen; the ids they resolve to are locked next.
        locked = sorted(names | set(due))
        repo.lock_customers(conn, locked)
        identity = resolve(batch_events, repo.identities_of(conn, sorted(names)))
        identity.emails = emails
        survivors = sorted(set(identity.mapping.values()) - set(locked))
        if survivors:
            repo.lock_customers(conn, survivors)
            locked = sorted({*locked, *survivors})
        events = {e.event_id: e for e in identity.events}
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
        return Sorted(fresh, by_customer, rejects, duplicates, duplicate_ids, locked, identity)

    def _load(
        self, conn: Connection, sorted_: Sorted, due: list[str], window: Window
    ) -> Evaluation:
        """The batch's customers and those due, as stored, and their journeys; a customer an
        id merged into holds that id's state, waiting events, memory and journeys too."""
        identity = sorted_.identity
        ids = sorted(set(sorted_.by_customer) | {identity.survivor(d) for d in due})
        merges = identity.merges
        gone = [m.previous for m in merges]
        extra = sorted({m.survivor for m in merges} - set(ids))
        held = dict(
            zip([*ids, *extra, *gone], self._held(conn, [*ids, *extra, *gone]), strict=True)
        )
        journeys, sends = self._journeys_of(conn, [*ids, *gone], window)
        for m in merges:
            held[m.survivor] = _merged(held[m.survivor], held.pop(m.previous))
            journeys.setdefault(m.survivor, []).extend(journeys.pop(m.previous, []))
            sends.setdefault(m.survivor, []).extend(sends.pop(m.previous, []))
        kept = [held[cid] for cid in ids]
        memories = [_with_sends(h.memory, sends.get(cid)) for cid, h in zip(ids, kept, strict=True)]
        return Evaluation(ids, kept, memories, journeys)

    def _perceive(self, ev: Evaluation, sorted_: Sorted, window: Window) -> None:
        """Walk each customer to the watermark, collecting the instants passed, and score every
        instant at once, so a model pays its overhead once per batch."""
        # A scorer that reads only a brief scores every instant from it; full features are
        # then built only where a decision is considered (`_at`).
        by_brief = self.scorer if isinstance(self.scorer, BriefScorer) else None
        eager = by_brief is None
        for i, cid in enumerate(ev.ids):
            h = ev.held[i]
            fresh = sorted_.by_customer.get(cid, ())
            ev.late += sum(1 for e in fresh if seconds(e) < window.floor)
            state, waiting = split_late(h.state, h.through, fresh)
            pending = sorted([*h.pending, *waiting], key=event_order) if waiting else h.pending
            ev.advanced.append(
                advance(state, h.through, pending, self.cadence, window.floor, window.until, eager)
            )
        keyed = [
            (inst.at, ev.ids[i], i, k)
            for i, adv in enumerate(ev.advanced)
            for k, inst in enumerate(adv.instants)
        ]
        keyed.sort()
        ev.order = [(i, k) for _, _, i, k in keyed]
        if ev.order and by_brief is not None:
            ev.risks = by_brief.risk_many([ev.advanced[i].instants[k].brief for i, k in ev.order])
        elif ev.order:
            ev.scores = self.scorer.score_many(
                [ev.advanced[i].instants[k].features for i, k in ev.order]
            )
            ev.risks = [sc.risk for sc in ev.scores]
        for e in sorted_.events:
            if e.type == "subscription.cancelled":
                self.history.add_cancellation(e.customer_id, e.occurred_at)

    def _decide(self, conn: Connection, ev: Evaluation) -> None:
        """Every instant in time order across customers (ties by customer id): the live policy
        (active, or the canary for its share), then each shadow on the customer as they were
        before the live decision. Budgets fill in that order, and what was learned is taken as
        of each instant."""
        budgets: dict[str, dict[str, float]] = {}
        loaded: dict[str, dict[str, float]] = {}
        for j, (i, k) in enumerate(ev.order):
            inst = ev.advanced[i].instants[k]
            risk = ev.risks[j]
            # Most instants settle the at-risk band and decide nothing: the decision's inputs,
            # trigger and evidence are built only for the others (`settled_band`).
            at: _At | None = None
            before_live = ev.memories[i]
            policy = self.policies.live_for(ev.ids[i])
            if relevant(policy, inst):
                band = _settled(policy, policy.id, inst, risk, before_live)
                if band is not None:
                    ev.memories[i] = DecisionMemory.band_into(ev.memories[i], policy.id, band)
                else:
                    at = self._at(inst, ev.scores[j] if ev.scores else None)
                    mode = "canary" if policy is self.policies.canary else "live"
                    spent = _budget(conn, budgets, loaded, policy, policy.id)
                    d = self._decide_one(ev, i, at, policy, policy.id, mode, spent)
                    ev.memories[i] = d.outcome.memory.into_customer(ev.memories[i], policy.id)
                    self._learn(ev, i, d)
            for shadow in self.policies.shadows:
                if not relevant(shadow, inst):
                    continue
                key = shadow_key(shadow)
                band = _settled(shadow, key, inst, risk, before_live)
                if band is None:
                    at = at or self._at(inst, ev.scores[j] if ev.scores else None)
                    spent = _budget(conn, budgets, loaded, shadow, key)
                    d = self._decide_one(ev, i, at, shadow, key, "shadow", spent, before_live)
                    band = d.outcome.memory.at_risk
                at_risk = {**ev.memories[i].get("at_risk", {}), key: band}
                ev.memories[i] = {**ev.memories[i], "at_risk": at_risk}
        for key, spent in budgets.items():
            if spent != loaded[key]:
                repo.save_budget_spent(conn, key, spent)
        ev.decided = _with_explanations(ev.decided, self.scorer)

    def _decide_one(
        self,
        ev: Evaluation,
        i: int,
        at: _At,
        policy: Policy,
        key: str,
        mode: str,
        spent: dict[str, float],
        memory_of: dict[str, Any] | None = None,
    ) -> Decided:
        """One policy at one instant of customer `i`; an action reserves its cost."""
        period = policy.budget.period_key(at.now) if policy.budget else ""
        before = spent.get(period, 0.0)
        customer_memory = ev.memories[i] if memory_of is None else memory_of
        inputs = DecisionInputs(
            at.instant.features,
            at.score,
            ev.memory(i, key, customer_memory, at.instant.at),
            at.trigger,
            at.now,
            self.guardrails,
            before,
            mode,
            at.evidence.get(policy.id, NO_EVIDENCE),
        )
        outcome = decide(inputs, policy)
        decision = outcome.decision
        if policy.budget and decision is not None and decision.status == "action":
            spent[period] = before + decision.cost
        d = Decided(outcome, inputs, policy)
        if decision is not None:
            ev.decided.append(d)
            if mode != "shadow" and at.trigger.silences & policy.trigger.silence_keys:
                ev.on_silence += 1
        return d

    def _at(self, inst: Instant, score: Score | None) -> _At:
        """An instant to decide: its trigger, time and what was learned by then (and its score
        on the full features, when the batch scored it from its brief)."""
        if score is None:
            score = self.scorer.score_many([inst.features])[0]
        now = from_epoch(inst.at)
        return _At(inst, score, trigger_of(inst), now, self.history.evidence_at(now))

    def _learn(self, ev: Evaluation, i: int, d: Decided) -> None:
        """What a live decision changes for the instants after it: the journey it starts is
        running, and a treatment or a hold-back is an outcome to learn from."""
        decision = d.outcome.decision
        if decision is None:
            return
        at = int(d.inputs.now.timestamp())
        if decision.status == "action":
            action = next(a for a in d.policy.actions if a.id == decision.action_id)
            spec = self.journeys.get(action.journey)
            ev.journeys.setdefault(ev.ids[i], []).append(
                JourneyView(
                    decision.decision_id,
                    "pending",
                    frozenset(spec.listens),
                    at,
                    at + int(spec.horizon_s),
                    new=True,
                )
            )
        if decision.status == "action" or decision.guardrail == "control_group":
            self.history.add_decision(
                lift.Decided(
                    decision.customer_id,
                    d.inputs.now,
                    decision.policy_id,
                    decision.policy_hash,
                    decision.action_id,
                    decision.cost,
                    decision.risk,
                    decision.segment,
                    True,
                )
            )

    def _signals(self, ev: Evaluation, sorted_: Sorted) -> list[dict[str, Any]]:
        """Outbox signals for the events running journeys wait for: this batch's events, and
        for a journey this batch started, the customer's events after its start that came
        earlier (they were waiting for their instant), so batching never loses a signal."""
        rows: list[dict[str, Any]] = []
        for i, cid in enumerate(ev.ids):
            fresh = sorted_.by_customer.get(cid, [])
            for j in ev.journeys.get(cid, ()):
                if j.status not in acts.OPEN_JOURNEY:
                    continue
                for e in [*ev.held[i].pending, *fresh] if j.new else fresh:
                    t = seconds(e)
                    if e.type not in j.listens or t < j.started:
                        continue
                    if j.ends_by is not None and t > j.ends_by:
                        continue
                    seen = EventObserved(e.occurred_at.timestamp(), e.type, e.event_id)
                    rows.append(
                        outbox_row(
                            JourneySignal(seen, correlation_id=e.event_id),
                            f"{j.decision_id}:{e.event_id}",
                            j.decision_id,
                            e.occurred_at,
                        )
                    )
        return rows

    def _journeys_of(
        self, conn: Connection, customer_ids: list[str], window: Window
    ) -> tuple[dict[str, list[JourneyView]], dict[str, list[list[Any]]]]:
        """The customers' journeys (running, or recent enough for the caps) and their sends."""
        since = from_epoch(window.floor) - dt.timedelta(seconds=CONTACT_MEMORY_S)
        journeys: dict[str, list[JourneyView]] = {}
        sends: dict[str, list[list[Any]]] = {}
        for row in acts.journeys_of(conn, customer_ids, since):
            if row.sends:
                sends.setdefault(row.customer_id, []).extend(row.sends)
            journeys.setdefault(row.customer_id, []).append(
                JourneyView(
                    row.decision_id,
                    row.status,
                    frozenset(row.listens or ()),
                    int(row.started_at.timestamp()),
                    int(row.ends_by.timestamp()) if row.ends_by is not None else None,
                )
            )
        return journeys, sends

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
        sent_as = write.identity.sent_as
        if write.identity.emails:
            personal.keep_email_ids(conn, write.identity.emails)
        if write.identity.merges:
            _merge_in(conn, write.identity.merges)
        if any(needs_redaction(e) for e in events):
            personal.keep(conn, events)
            repo.insert_events(conn, [redacted(e) for e in events], sent_as)
        else:
            repo.insert_events(conn, events, sent_as)
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

    def _spec_record(self, spec: JourneySpec) -> dict[str, Any]:
        """The journey spec as a start message carries it (dumped once per version)."""
        record = self._spec_records.get(spec.content_hash)
        if record is None:
            record = self._spec_records[spec.content_hash] = spec.model_dump(
                mode="json", by_alias=True
            )
        return record

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
            journey=self._spec_record(spec),
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

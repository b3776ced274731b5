"""Tables (SQLAlchemy Core). Alembic migrations under `migrations/` create and evolve them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC time on every backend (SQLite has no time zones; we store UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused by the store")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


Json = JSON().with_variant(JSONB(), "postgresql")

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("type", String(100), nullable=False),
    Column("customer_id", String(200), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("source", String(100)),
    Column("partner_id", String(200)),
    Column("schema_version", Integer, nullable=False),
    Column("payload", Json, nullable=False),  # as sent: the schema's fields and extra ones
    Column("context", Json),  # the producer's top-level `context`; migration 0014
    # The id the event was sent with, when it is stored under the id that survived a merge.
    Column("sent_as", String(200)),
    # A customer's timeline; migration 0008.
    Index("ix_events_customer_time", "customer_id", "occurred_at"),
)

rejects = Table(
    "rejects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(40), nullable=False, index=True),
    Column("source", Text, nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("field", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("raw", LargeBinary, nullable=False),
    Column("raw_sha256", String(64), nullable=False),  # of `raw`, what is kept
    # The whole input, of which `raw` may be only a prefix (parse.MAX_REJECT_RAW): its length in
    # bytes and its sha256. Empty in rows stored before migration 0011.
    Column("input_size", BigInteger),
    Column("input_sha256", String(64)),
    # Each run keeps its own rejects (a rerun shows its own reasons); within a run the same bad
    # line is kept once, so a retried batch adds nothing (migration 0013).
    UniqueConstraint("run_id", "source", "line_no", "raw_sha256", name="uq_rejects_run_line"),
)

# Ids merged into another (an anonymous id, a second account): events sent with `alias_id`
# count for `customer_id`. Migration 0015.
identities = Table(
    "identities",
    metadata,
    Column("alias_id", String(200), primary_key=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("merged_at", UtcDateTime, nullable=False),
    Column("event_id", String(200), nullable=False),
)

customers = Table(
    "customers",
    metadata,
    Column("customer_id", String(200), primary_key=True),
    Column("state", Json, nullable=False),
    Column("memory", Json, nullable=False),
    Column("last_seen", UtcDateTime),
    Column("version", Integer, nullable=False),
    # Perceived time (epoch seconds): the state folds the events before `through_s`; `due_s`
    # is the next decision instant, a durable timer a sweep finds by index.
    Column("through_s", BigInteger),
    Column("due_s", BigInteger, index=True),
    Index("ix_customers_last_seen", "last_seen"),  # the most recently seen first; 0017
)

# The workspace's perceived time: the newest event time seen, and the watermark decision
# instants have been processed to (one row, name "events").
watermarks = Table(
    "watermarks",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("newest_s", BigInteger, nullable=False),
    Column("processed_s", BigInteger, nullable=False),
)

decisions = Table(
    "decisions",
    metadata,
    Column("decision_id", String(64), primary_key=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("decided_at", UtcDateTime, nullable=False),
    Column("status", String(20), nullable=False),
    Column("action_id", String(100)),
    Column("channel", String(50)),
    Column("guardrail", String(50)),
    Column("reason", Text, nullable=False),
    Column("risk", Float, nullable=False),
    Column("policy_id", String(100), nullable=False),
    Column("policy_hash", String(64), nullable=False),
    Column("trigger_event_id", String(200), nullable=False),
    Column("mode", String(20), nullable=False),
    Column("audit_seq", BigInteger, nullable=False),
    Column("record", Json, nullable=False),
    # Lists page by (decided_at, decision_id); migration 0017.
    Index("ix_decisions_time", "decided_at", "decision_id"),
)

audit = Table(
    "audit",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(40), nullable=False),
    Column("ref", String(200), nullable=False, index=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("body", Text, nullable=False),
)

# One row: the head of the audit chain. Writers lock it, which serialises appends across workers.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

policies = Table(
    "policies",
    metadata,
    Column("policy_hash", String(64), primary_key=True),
    Column("policy_id", String(100), nullable=False),
    Column("label", Text, nullable=False),
    Column("content", Json, nullable=False),
    Column("status", String(20), nullable=False, server_default="draft"),
    Column("canary_percent", Float),
    Column("author", String(100)),
    Column("approved_by", String(100)),
    Column("registered_at", UtcDateTime),
    Column("changed_at", UtcDateTime),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("decision_id", String(64), nullable=False, index=True),
    Column("kind", String(40), nullable=False),
    Column("payload", Json, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("dispatched_at", UtcDateTime),
    Column("attempts", Integer, nullable=False, default=0),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("source", Text, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    Column("read", Integer, nullable=False, default=0),
    Column("accepted", Integer, nullable=False, default=0),
    Column("duplicates", Integer, nullable=False, default=0),
    Column("rejected", Integer, nullable=False, default=0),
    Column("decisions", Integer, nullable=False, default=0),
    Column("late", Integer, nullable=False, default=0, server_default="0"),
    Column("instants", Integer, nullable=False, default=0, server_default="0"),
)

# Trained models: one row per version. `artifact` holds everything needed to score (trees,
# calibration, BG/NBD and Gamma-Gamma parameters, drift reference); the rest is for people.
models = Table(
    "models",
    metadata,
    Column("version", String(40), primary_key=True),
    Column("algorithm", String(60), nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("params", Json, nullable=False),
    Column("training_window", Json, nullable=False),
    Column("data_fingerprint", String(64), nullable=False),
    Column("metrics", Json, nullable=False),
    Column("artifact", Text, nullable=False),
)

# Budget reserved per policy and period (a decided action reserves its cost).
budgets = Table(
    "budgets",
    metadata,
    Column("policy_id", String(100), primary_key=True),
    Column("period", String(20), primary_key=True),
    Column("spent", Float, nullable=False),
)

# One row per journey (workflow id = decision id): where it stands, for operators and for the
# pipeline, which signals the events a journey waits for and counts its sends against the caps.
journeys = Table(
    "journeys",
    metadata,
    Column("decision_id", String(64), primary_key=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("journey_id", String(100), nullable=False),
    Column("journey_hash", String(64), nullable=False),
    Column("action_id", String(100)),
    Column("channel", String(50)),
    Column("status", String(20), nullable=False),  # pending, running, completed, failed
    Column("step", String(100)),
    Column("outcome", String(100)),
    Column("listens", Json, nullable=False),  # event types its waits wait for
    Column("sends", Json, nullable=False),  # [[epoch, channel], ...] delivered follow-up sends
    Column("state", Json),
    Column("started_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # Decision time + the longest the spec can run: in event time, when the journey is over at
    # the latest, so a replayed history does not count a never-dispatched journey as running.
    Column("ends_by", UtcDateTime),
)

# Every effect on the outside world, keyed by its idempotency key: a send, a grant, a ticket,
# a revocation, a budget release. A key already `delivered`/`done` is never carried out again.
deliveries = Table(
    "deliveries",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("decision_id", String(64), nullable=False, index=True),
    Column("customer_id", String(200), nullable=False),
    Column("kind", String(20), nullable=False),  # deliver, grant, ticket, compensate
    Column("channel", String(50)),
    Column("status", String(20), nullable=False, index=True),  # delivered, done, held, dead, ...
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("payload", Json, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# The human task queue.
tasks = Table(
    "tasks",
    metadata,
    Column("task_id", String(200), primary_key=True),
    Column("decision_id", String(64), nullable=False, index=True),
    Column("customer_id", String(200), nullable=False),
    Column("queue", String(100), nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", String(20), nullable=False, index=True),  # open, resolved, expired
    Column("resolution", String(100)),
    Column("resolved_by", String(100)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("due_at", UtcDateTime),
    Column("resolved_at", UtcDateTime),
)

# Per channel: the circuit breaker and the rate-limit window, shared by every worker.
channel_state = Table(
    "channel_state",
    metadata,
    Column("channel", String(50), primary_key=True),
    Column("circuit", String(20), nullable=False),  # closed, open
    Column("failures", Integer, nullable=False),
    Column("opened_at", UtcDateTime),
    Column("window_start", UtcDateTime),
    Column("window_count", Integer, nullable=False),
)

# The points ledger (loyalty/ledger.py has the rules; store/ledger.py posts them).
ledger_accounts = Table(
    "ledger_accounts",
    metadata,
    Column("account_id", String(300), primary_key=True),
    Column("posted_dr", BigInteger, nullable=False),
    Column("posted_cr", BigInteger, nullable=False),
    Column("pending_dr", BigInteger, nullable=False),
    Column("pending_cr", BigInteger, nullable=False),
    Column("unbacked", BigInteger, nullable=False),
)

ledger_transfers = Table(
    "ledger_transfers",
    metadata,
    Column("transfer_id", String(200), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("debit", String(300), nullable=False, index=True),
    Column("credit", String(300), nullable=False, index=True),
    Column("amount", BigInteger, nullable=False),
    Column("at", Float, nullable=False),
    Column("status", String(20), nullable=False),
    Column("payload_hash", String(64), nullable=False),
    Column("pending_id", String(200)),
    Column("timeout_at", Float),
    Column("lots", Json, nullable=False),
    Column("unbacked", BigInteger, nullable=False),
    Column("ref", String(300)),
)

# Immutable: one row per side of a posted or pending transfer; they sum to zero per transfer.
ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("transfer_id", String(200), primary_key=True),
    Column("account_id", String(300), primary_key=True),
    Column("amount", BigInteger, nullable=False),
)

ledger_lots = Table(
    "ledger_lots",
    metadata,
    Column("lot_id", String(200), primary_key=True),
    Column("account_id", String(300), nullable=False, index=True),
    Column("earned_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("amount", BigInteger, nullable=False),
    Column("remaining", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False),
)

# Points accrued (and refused) per contract, customer and period: the caps count these.
contract_usage = Table(
    "contract_usage",
    metadata,
    Column("contract_id", String(100), primary_key=True),
    Column("scope", String(200), primary_key=True),  # "*" for the whole contract, or a customer
    Column("period", String(20), primary_key=True),
    Column("points", BigInteger, nullable=False),
)

# One row per event that earned under a contract: what it asked for, what was granted, and why
# the rest was refused. An event already here is never accrued again.
loyalty_accruals = Table(
    "loyalty_accruals",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("partner_id", String(200), nullable=False, index=True),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("contract_id", String(100), nullable=False),
    Column("version_from", UtcDateTime, nullable=False),
    Column("rule_id", String(100), nullable=False),
    Column("requested", BigInteger, nullable=False),
    Column("granted", BigInteger, nullable=False),
    Column("refused_reason", Text),
    Column("shares", Json, nullable=False),
    # Returns of the purchase so far: the share of it returned (0..1; partial returns add up)
    # and the points clawed back from each funder.
    Column("returned", Float, nullable=False, default=0.0, server_default="0"),
    Column("clawed", Json),
)

# What each loyalty.* event did to the ledger (posted, refused and why).
loyalty_results = Table(
    "loyalty_results",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("type", String(100), nullable=False),
    Column("result", String(60), nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("detail", Text),
)

# Each member's tier per programme (changes are audit records of kind "tier").
loyalty_tiers = Table(
    "loyalty_tiers",
    metadata,
    Column("programme", String(100), primary_key=True),
    Column("customer_id", String(200), primary_key=True),
    Column("tier", String(50), nullable=False),
    Column("below_since", UtcDateTime),
    Column("changed_at", UtcDateTime),
)

# Disputed statement lines and their adjustments: proposed by one person, approved by another.
partner_adjustments = Table(
    "partner_adjustments",
    metadata,
    Column("adjustment_id", String(64), primary_key=True),
    Column("partner", String(200), nullable=False, index=True),
    Column("oem", String(200), nullable=False),
    Column("period", String(7), nullable=False),
    Column("reference", String(200), nullable=False),
    Column("points", BigInteger, nullable=False),  # > 0: the partner funds more of it
    Column("reason", Text, nullable=False),
    Column("author", String(100), nullable=False),
    Column("status", String(20), nullable=False),  # proposed, approved
    Column("approved_by", String(100)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("decided_at", UtcDateTime),
)

# Grants and adjustments of a member's points (goodwill, corrections): each with its reason and
# author; above the programme's four-eyes threshold it waits here until someone else approves it.
ledger_proposals = Table(
    "ledger_proposals",
    metadata,
    Column("proposal_id", String(64), primary_key=True),
    Column("kind", String(20), nullable=False),  # grant, adjust
    Column("programme", String(100), nullable=False),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("points", BigInteger, nullable=False),  # > 0 credits the member, < 0 debits
    Column("reason", Text, nullable=False),
    Column("author", String(100), nullable=False),
    Column("status", String(20), nullable=False, index=True),  # proposed, posted, rejected
    Column("threshold", BigInteger, nullable=False),  # the four-eyes threshold it was held to
    Column("created_at", UtcDateTime, nullable=False),
    Column("decided_by", String(100)),
    Column("decided_at", UtcDateTime),
    Column("note", Text),  # why it was rejected
)

# API tokens: only a digest is kept; the token itself is shown once, when it is created.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("token_id", String(20), nullable=False, unique=True),
    Column("role", String(30), nullable=False),
    Column("partner", String(200)),
    Column("label", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    Column("expires_at", UtcDateTime),  # None: until revoked
)

# A dashboard sign-in: the cookie holds a random session id, stored only as its digest. A session
# ends at sign-out, when its token is revoked or expires, after 30 idle minutes or 12 hours.
dashboard_sessions = Table(
    "dashboard_sessions",
    metadata,
    Column("session_hash", String(64), primary_key=True),
    Column("token_id", String(20), nullable=False, index=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("seen_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime),
)

# Personal data lives here and only here: the event log keeps digests of it, the audit chain
# never sees it, and erasing a customer deletes this row (see runtime/personal.py).
personal_data = Table(
    "personal_data",
    metadata,
    Column("customer_id", String(200), primary_key=True),
    Column("name", Text),
    Column("email", Text),
    Column("phone", Text),
    Column("updated_at", UtcDateTime, nullable=False),  # event time of the newest value
)

"""The walking skeleton's tables: event log, rejects, customers, decisions, audit, outbox, runs.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from tenure.store.schema import Json, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("occurred_at", UtcDateTime, nullable=False),
        sa.Column("source", sa.String(100)),
        sa.Column("partner_id", sa.String(200)),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("payload", Json, nullable=False),
    )
    op.create_table(
        "rejects",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(40), nullable=False, index=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("line_no", sa.Integer, nullable=False),
        sa.Column("field", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("raw_sha256", sa.String(64), nullable=False),
        sa.UniqueConstraint("source", "line_no", "raw_sha256", name="uq_rejects_line"),
    )
    op.create_table(
        "customers",
        sa.Column("customer_id", sa.String(200), primary_key=True),
        sa.Column("state", Json, nullable=False),
        sa.Column("memory", Json, nullable=False),
        sa.Column("last_seen", UtcDateTime),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_table(
        "decisions",
        sa.Column("decision_id", sa.String(64), primary_key=True),
        sa.Column("customer_id", sa.String(200), nullable=False, index=True),
        sa.Column("decided_at", UtcDateTime, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("action_id", sa.String(100)),
        sa.Column("channel", sa.String(50)),
        sa.Column("guardrail", sa.String(50)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("risk", sa.Float, nullable=False),
        sa.Column("policy_id", sa.String(100), nullable=False),
        sa.Column("policy_hash", sa.String(64), nullable=False),
        sa.Column("trigger_event_id", sa.String(200), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("audit_seq", sa.BigInteger, nullable=False),
        sa.Column("record", Json, nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("ref", sa.String(200), nullable=False, index=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.execute(f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{'0' * 64}')")
    op.create_table(
        "policies",
        sa.Column("policy_hash", sa.String(64), primary_key=True),
        sa.Column("policy_id", sa.String(100), nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("content", Json, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        sa.Column("decision_id", sa.String(64), nullable=False, index=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("dispatched_at", UtcDateTime),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("started_at", UtcDateTime, nullable=False),
        sa.Column("finished_at", UtcDateTime),
        sa.Column("read", sa.Integer, nullable=False, server_default="0"),
        sa.Column("accepted", sa.Integer, nullable=False, server_default="0"),
        sa.Column("duplicates", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rejected", sa.Integer, nullable=False, server_default="0"),
        sa.Column("decisions", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    for table in (
        "runs",
        "outbox",
        "policies",
        "audit_head",
        "audit",
        "decisions",
        "customers",
        "rejects",
        "events",
    ):
        op.drop_table(table)

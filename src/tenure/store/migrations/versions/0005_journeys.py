"""Journeys, deliveries (every outside effect by idempotency key), human tasks, channel state.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from tenure.store.schema import Json, UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "journeys",
        sa.Column("decision_id", sa.String(64), primary_key=True),
        sa.Column("customer_id", sa.String(200), nullable=False, index=True),
        sa.Column("journey_id", sa.String(100), nullable=False),
        sa.Column("journey_hash", sa.String(64), nullable=False),
        sa.Column("action_id", sa.String(100)),
        sa.Column("channel", sa.String(50)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("step", sa.String(100)),
        sa.Column("outcome", sa.String(100)),
        sa.Column("listens", Json, nullable=False),
        sa.Column("sends", Json, nullable=False),
        sa.Column("state", Json),
        sa.Column("started_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("ends_by", UtcDateTime),
    )
    op.create_table(
        "deliveries",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("decision_id", sa.String(64), nullable=False, index=True),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("channel", sa.String(50)),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("payload", Json, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "tasks",
        sa.Column("task_id", sa.String(200), primary_key=True),
        sa.Column("decision_id", sa.String(64), nullable=False, index=True),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("queue", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("resolution", sa.String(100)),
        sa.Column("resolved_by", sa.String(100)),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("due_at", UtcDateTime),
        sa.Column("resolved_at", UtcDateTime),
    )
    op.create_table(
        "channel_state",
        sa.Column("channel", sa.String(50), primary_key=True),
        sa.Column("circuit", sa.String(20), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("opened_at", UtcDateTime),
        sa.Column("window_start", UtcDateTime),
        sa.Column("window_count", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for table in ("channel_state", "tasks", "deliveries", "journeys"):
        op.drop_table(table)

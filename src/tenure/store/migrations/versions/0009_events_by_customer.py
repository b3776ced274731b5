"""An index on events by customer and time: a customer's timeline (the dashboard) and a partner's
claim on a customer (the API) read a few rows of one customer instead of scanning the log.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_customer_time", "events", ["customer_id", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_events_customer_time", table_name="events")

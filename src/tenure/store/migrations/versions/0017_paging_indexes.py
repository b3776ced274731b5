"""Indexes for keyset paging and for the dashboard's customers worth saving: decisions in
`(decided_at, decision_id)` order (every decisions list pages by that key) and customers by
`last_seen` (the worth-saving window is the most recently seen).

Revision ID: 0017
Revises: 0016
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_decisions_time", "decisions", ["decided_at", "decision_id"])
    op.create_index("ix_customers_last_seen", "customers", ["last_seen"])


def downgrade() -> None:
    op.drop_index("ix_customers_last_seen", table_name="customers")
    op.drop_index("ix_decisions_time", table_name="decisions")

"""Perceived time: each customer's durable timer and the workspace's watermark.

`customers.through_s` says up to when the stored state folds the customer's events (later ones
wait in the event log for their instant); `customers.due_s` is the next decision instant (the
close of a period with events or a silence timer), indexed so a sweep finds who is due without
reading every customer. `watermarks` holds the newest event time seen and the watermark
instants have been processed to. Times are epoch seconds: instants are whole seconds, compared
in bulk on every batch.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("customers", sa.Column("through_s", sa.BigInteger))
    op.add_column("customers", sa.Column("due_s", sa.BigInteger))
    op.create_index("ix_customers_due_s", "customers", ["due_s"])
    op.add_column("runs", sa.Column("late", sa.Integer, nullable=False, server_default="0"))
    op.add_column("runs", sa.Column("instants", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "watermarks",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("newest_s", sa.BigInteger, nullable=False),
        sa.Column("processed_s", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("watermarks")
    op.drop_column("runs", "instants")
    op.drop_column("runs", "late")
    op.drop_index("ix_customers_due_s", table_name="customers")
    op.drop_column("customers", "due_s")
    op.drop_column("customers", "through_s")

"""Identity: one person under several ids. `identities` maps each id merged away (an anonymous
id, a second account) to the id that survives; an event keeps the id it was sent with in
`events.sent_as` when it is stored under the surviving one.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

from tenure.store.schema import UtcDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identities",
        sa.Column("alias_id", sa.String(200), primary_key=True),
        sa.Column("customer_id", sa.String(200), nullable=False, index=True),
        sa.Column("merged_at", UtcDateTime, nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
    )
    op.add_column("events", sa.Column("sent_as", sa.String(200)))


def downgrade() -> None:
    op.drop_column("events", "sent_as")
    op.drop_table("identities")

"""Personal data (name, email, phone) in one table of its own, so it can be erased.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from tenure.store.schema import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "personal_data",
        sa.Column("customer_id", sa.String(200), primary_key=True),
        sa.Column("name", sa.Text),
        sa.Column("email", sa.Text),
        sa.Column("phone", sa.Text),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("personal_data")

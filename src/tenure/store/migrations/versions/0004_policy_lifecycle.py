"""Policy lifecycle: status, canary share, author and approver.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from tenure.store.schema import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("policies") as batch:
        batch.add_column(sa.Column("status", sa.String(20), nullable=False, server_default="draft"))
        batch.add_column(sa.Column("canary_percent", sa.Float))
        batch.add_column(sa.Column("author", sa.String(100)))
        batch.add_column(sa.Column("approved_by", sa.String(100)))
        batch.add_column(sa.Column("registered_at", UtcDateTime))
        batch.add_column(sa.Column("changed_at", UtcDateTime))


def downgrade() -> None:
    with op.batch_alter_table("policies") as batch:
        for column in (
            "changed_at",
            "registered_at",
            "approved_by",
            "author",
            "canary_percent",
            "status",
        ):
            batch.drop_column(column)

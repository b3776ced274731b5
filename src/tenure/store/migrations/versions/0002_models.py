"""The model registry.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from tenure.store.schema import Json, UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("version", sa.String(40), primary_key=True),
        sa.Column("algorithm", sa.String(60), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("params", Json, nullable=False),
        sa.Column("training_window", Json, nullable=False),
        sa.Column("data_fingerprint", sa.String(64), nullable=False),
        sa.Column("metrics", Json, nullable=False),
        sa.Column("artifact", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("models")

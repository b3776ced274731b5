"""API tokens (stored as digests), with a role and, for partners, the partner they act for.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from tenure.store.schema import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("token_id", sa.String(20), nullable=False, unique=True),
        sa.Column("role", sa.String(30), nullable=False),
        sa.Column("partner", sa.String(200)),
        sa.Column("label", sa.Text),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("revoked_at", UtcDateTime),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")

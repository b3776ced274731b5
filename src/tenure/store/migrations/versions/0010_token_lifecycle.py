"""Token lifecycle: an optional expiry on API tokens, and dashboard sessions (the cookie holds an
opaque session id, stored here only as its digest, never the API token).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from tenure.store.schema import UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_tokens", sa.Column("expires_at", UtcDateTime))
    op.create_table(
        "dashboard_sessions",
        sa.Column("session_hash", sa.String(64), primary_key=True),
        sa.Column("token_id", sa.String(20), nullable=False, index=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("seen_at", UtcDateTime, nullable=False),
        sa.Column("ended_at", UtcDateTime),
    )


def downgrade() -> None:
    op.drop_table("dashboard_sessions")
    # SQLite cannot drop a column in place: batch mode copies the table.
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("expires_at")

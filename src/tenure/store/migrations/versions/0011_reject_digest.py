"""Reject digest: a reject keeps at most a prefix of its input (parse.MAX_REJECT_RAW), so the
whole input's length and sha256 get columns of their own (they were only in the reason text).
Rows stored before leave them empty.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("rejects", sa.Column("input_size", sa.BigInteger))
    op.add_column("rejects", sa.Column("input_sha256", sa.String(64)))


def downgrade() -> None:
    # SQLite cannot drop a column in place: batch mode copies the table.
    with op.batch_alter_table("rejects") as batch:
        batch.drop_column("input_sha256")
        batch.drop_column("input_size")

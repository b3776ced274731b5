"""The points ledger: accounts, transfers, entries and lots.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from tenure.store.schema import Json

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("account_id", sa.String(300), primary_key=True),
        sa.Column("posted_dr", sa.BigInteger, nullable=False),
        sa.Column("posted_cr", sa.BigInteger, nullable=False),
        sa.Column("pending_dr", sa.BigInteger, nullable=False),
        sa.Column("pending_cr", sa.BigInteger, nullable=False),
        sa.Column("unbacked", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "ledger_transfers",
        sa.Column("transfer_id", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("debit", sa.String(300), nullable=False, index=True),
        sa.Column("credit", sa.String(300), nullable=False, index=True),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("payload_hash", sa.String(64), nullable=False),
        sa.Column("pending_id", sa.String(200)),
        sa.Column("timeout_at", sa.Float),
        sa.Column("lots", Json, nullable=False),
        sa.Column("unbacked", sa.BigInteger, nullable=False),
        sa.Column("ref", sa.String(300)),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("transfer_id", sa.String(200), primary_key=True),
        sa.Column("account_id", sa.String(300), primary_key=True),
        sa.Column("amount", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "ledger_lots",
        sa.Column("lot_id", sa.String(200), primary_key=True),
        sa.Column("account_id", sa.String(300), nullable=False, index=True),
        sa.Column("earned_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("remaining", sa.BigInteger, nullable=False),
        sa.Column("reserved", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("ledger_lots", "ledger_entries", "ledger_transfers", "ledger_accounts"):
        op.drop_table(table)

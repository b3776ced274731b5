"""The points ledger (accounts, transfers, entries, lots) and contract accrual with its caps.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from tenure.store.schema import Json, UtcDateTime

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
    op.create_table(
        "contract_usage",
        sa.Column("contract_id", sa.String(100), primary_key=True),
        sa.Column("scope", sa.String(200), primary_key=True),
        sa.Column("period", sa.String(20), primary_key=True),
        sa.Column("points", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "loyalty_accruals",
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("customer_id", sa.String(200), nullable=False, index=True),
        sa.Column("partner_id", sa.String(200), nullable=False, index=True),
        sa.Column("occurred_at", UtcDateTime, nullable=False),
        sa.Column("contract_id", sa.String(100), nullable=False),
        sa.Column("version_from", UtcDateTime, nullable=False),
        sa.Column("rule_id", sa.String(100), nullable=False),
        sa.Column("requested", sa.BigInteger, nullable=False),
        sa.Column("granted", sa.BigInteger, nullable=False),
        sa.Column("refused_reason", sa.Text),
        sa.Column("shares", Json, nullable=False),
    )
    op.create_table(
        "loyalty_results",
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("customer_id", sa.String(200), nullable=False, index=True),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("result", sa.String(60), nullable=False),
        sa.Column("points", sa.BigInteger, nullable=False),
        sa.Column("detail", sa.Text),
    )
    op.create_table(
        "loyalty_tiers",
        sa.Column("programme", sa.String(100), primary_key=True),
        sa.Column("customer_id", sa.String(200), primary_key=True),
        sa.Column("tier", sa.String(50), nullable=False),
        sa.Column("below_since", UtcDateTime),
        sa.Column("changed_at", UtcDateTime),
    )
    op.create_table(
        "partner_adjustments",
        sa.Column("adjustment_id", sa.String(64), primary_key=True),
        sa.Column("partner", sa.String(200), nullable=False, index=True),
        sa.Column("oem", sa.String(200), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("reference", sa.String(200), nullable=False),
        sa.Column("points", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("author", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("approved_by", sa.String(100)),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("decided_at", UtcDateTime),
    )


def downgrade() -> None:
    for table in (
        "partner_adjustments",
        "loyalty_tiers",
        "loyalty_results",
        "loyalty_accruals",
        "contract_usage",
        "ledger_lots",
        "ledger_entries",
        "ledger_transfers",
        "ledger_accounts",
    ):
        op.drop_table(table)

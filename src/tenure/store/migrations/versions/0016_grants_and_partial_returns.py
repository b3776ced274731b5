"""Own-brand loyalty: grants and adjustments of a member's points, and partial returns.

`ledger_proposals` keeps every grant and adjustment with its reason and author; one above the
programme's four-eyes threshold waits there (`proposed`) until someone else approves it.
`loyalty_accruals` gains how much of each purchase has come back (`returned`, a share of it) and
the points clawed back from each funder (`clawed`), so partial returns add up to at most the
whole. A purchase a return took back before this revision (returns were always whole) is marked
returned in full.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

from tenure.store.schema import Json, UtcDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_proposals",
        sa.Column("proposal_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("programme", sa.String(100), nullable=False),
        sa.Column("customer_id", sa.String(200), nullable=False, index=True),
        sa.Column("points", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("author", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("threshold", sa.BigInteger, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("decided_by", sa.String(100)),
        sa.Column("decided_at", UtcDateTime),
        sa.Column("note", sa.Text),
    )
    op.add_column(
        "loyalty_accruals", sa.Column("returned", sa.Float, nullable=False, server_default="0")
    )
    op.add_column("loyalty_accruals", sa.Column("clawed", Json))
    # Before this revision a return's clawbacks were named return:<purchase event>:<funder>.
    op.execute(
        "UPDATE loyalty_accruals SET returned = 1 WHERE EXISTS ("
        "SELECT 1 FROM ledger_transfers tr WHERE tr.kind = 'clawback' AND "
        "substr(tr.transfer_id, 1, length(loyalty_accruals.event_id) + 8) = "
        "'return:' || loyalty_accruals.event_id || ':')"
    )


def downgrade() -> None:
    op.drop_column("loyalty_accruals", "clawed")
    op.drop_column("loyalty_accruals", "returned")
    op.drop_table("ledger_proposals")

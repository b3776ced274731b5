"""Schema evolution: an event's top-level `context` (what a producer such as Segment sends about
where the event came from) is kept in a column of its own. Extra payload fields are kept in the
payload column as sent, beside the fields the schema knows.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

from tenure.store.schema import Json

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("context", Json))


def downgrade() -> None:
    op.drop_column("events", "context")

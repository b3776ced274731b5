"""Rejects per run: each run keeps its own rejects, so a line rejected again after a fix to the
mapping shows the new reason under the new run (the old unique key kept only the first run's).
Within a run the key still holds, so a retried batch stores its rejects once.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_PER_RUN = ["run_id", "source", "line_no", "raw_sha256"]
_PER_LINE = ["source", "line_no", "raw_sha256"]


def upgrade() -> None:
    # SQLite cannot change a table's constraints in place: batch mode copies the table.
    with op.batch_alter_table("rejects") as batch:
        batch.drop_constraint("uq_rejects_line", type_="unique")
        batch.create_unique_constraint("uq_rejects_run_line", _PER_RUN)


def downgrade() -> None:
    # One row per line again: the newest run's, which holds the current reason.
    rejects = sa.table("rejects", *(sa.column(c) for c in ("id", *_PER_LINE)))
    newest = sa.select(sa.func.max(rejects.c.id)).group_by(*(rejects.c[c] for c in _PER_LINE))
    op.execute(sa.delete(rejects).where(rejects.c.id.not_in(newest.scalar_subquery())))
    with op.batch_alter_table("rejects") as batch:
        batch.drop_constraint("uq_rejects_run_line", type_="unique")
        batch.create_unique_constraint("uq_rejects_line", _PER_LINE)

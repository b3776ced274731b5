"""Alembic environment: runs on the connection tenure hands it (see `tenure.store.db.migrate`)."""

from alembic import context

from tenure.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

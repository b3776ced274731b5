"""Persistence: SQLAlchemy Core tables, Alembic migrations, batch reads and writes, queries."""

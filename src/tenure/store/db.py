"""Opening the store: engine, SQLite pragmas, and migrations to the newest revision."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError

from tenure.errors import StoreError

MIGRATIONS = Path(__file__).parent / "migrations"
# SQLSTATEs after which a transaction may simply run again: PostgreSQL aborted it to break a
# deadlock (40P01), or could not serialize it with a concurrent one (40001).
RETRY_STATES = frozenset({"40P01", "40001"})
_LOCK = {"n": "tenure.migrations"}


def _json(obj: Any) -> str:
    # Non-string keys: customer state keys its day buckets by day number.
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()


def _sqlite_setup(engine: Engine) -> None:
    # pysqlite's own transaction handling begins lazily (DEFERRED), so two writers can both read
    # the audit head and then fail to upgrade their lock. We begin IMMEDIATE ourselves instead.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        # Checkpoint the WAL every 64 MB instead of every 4 MB: a batch writes tens of MB, and
        # fewer, larger checkpoints measured ~5% faster ingest (see benchmarks/ingest.py).
        cur.execute("PRAGMA wal_autocheckpoint=16384")
        # A 64 MB page cache instead of 2 MB: the event log's two B-trees (by id, by customer
        # and time) take inserts in random order, and with the default cache a 200,000-event
        # ingest spent a third more time in SQLite (benchmarks/ingest.py).
        cur.execute("PRAGMA cache_size=-65536")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        readonly = conn.get_execution_options().get("tenure_readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def retryable(exc: BaseException) -> bool:
    """Whether `exc` aborted a transaction that may run again exactly as it was."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in RETRY_STATES


def make_engine(url: str) -> Engine:
    """An engine for `url` with orjson for JSON columns and sane SQLite settings."""
    try:
        engine = create_engine(url, json_serializer=_json, json_deserializer=orjson.loads)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise StoreError(f"cannot use database URL {url!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        _sqlite_setup(engine)
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (a no-op when it already is)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Two processes opening a fresh database at once would both create the schema
                # and race on alembic_version; the second waits here, then finds it at head.
                # (SQLite's migrations already run one at a time: BEGIN IMMEDIATE.)
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:n, 0))"), _LOCK)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot open the store at {engine.url!r}: {exc.args[0]}") from None


class Store:
    """The database behind a workspace; all reads and writes go through its connections."""

    def __init__(self, url: str, migrate_schema: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        if migrate_schema:
            migrate(self.engine)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction: committed on success, rolled back on any error."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def reader(self) -> Iterator[Connection]:
        """A connection for reads."""
        with self.engine.connect() as conn:
            conn.execution_options(tenure_readonly=True)
            yield conn

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

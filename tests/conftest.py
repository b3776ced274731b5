"""Shared fixtures: real stores (a SQLite file per test, a PostgreSQL database per test).

PostgreSQL: the Debian cluster is started here when it is not running (as the suite's own set-up,
so a fresh machine needs nothing by hand). TENURE_TEST_POSTGRES_URL points at another server. In
CI (CI=true) an unavailable PostgreSQL fails the run instead of skipping its tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

SOCKET_DIR = "/var/run/postgresql"


def _sh(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def _psql(*args: str) -> subprocess.CompletedProcess[str]:
    """psql as the postgres superuser over the local socket."""
    return _sh("runuser", "-u", "postgres", "--", "psql", "-h", SOCKET_DIR, *args)


def _start_debian_cluster() -> str | None:
    """Start the local cluster if needed; return a server URL or None with no PostgreSQL here."""
    if not shutil.which("pg_ctlcluster"):
        return None
    if _sh("pg_isready", "-h", SOCKET_DIR).returncode != 0:
        versions = sorted(p.name for p in Path("/etc/postgresql").glob("*") if p.is_dir())
        if not versions:
            return None
        _sh("pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start")
        for _ in range(60):
            if _sh("pg_isready", "-h", SOCKET_DIR).returncode == 0:
                break
            time.sleep(0.5)
        else:
            return None
    user = os.environ.get("USER") or "root"
    exists = _psql("-tAc", f"SELECT 1 FROM pg_roles WHERE rolname = '{user}'")
    if exists.stdout.strip() != "1":
        _psql("-c", f'CREATE ROLE "{user}" SUPERUSER LOGIN')
    return f"postgresql+psycopg://{user}@/postgres?host={SOCKET_DIR}"


@pytest.fixture(scope="session")
def postgres_server() -> str | None:
    """URL of a PostgreSQL server's maintenance database, or None."""
    url = os.environ.get("TENURE_TEST_POSTGRES_URL") or _start_debian_cluster()
    if url is None and os.environ.get("CI"):
        pytest.fail("PostgreSQL is required in CI but could not be started")
    return url


@pytest.fixture
def postgres_url(postgres_server: str | None) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    if postgres_server is None:
        pytest.skip("no PostgreSQL server available")
    name = f"tenure_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(postgres_server).set(database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs against both backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tenure.db'}"
    return str(request.getfixturevalue("postgres_url"))

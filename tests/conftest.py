"""Project-wide test fixtures.

Integration tests (`@pytest.mark.integration`) need the PostgreSQL and Redis servers on
127.0.0.1. They skip with a visible reason when a server is absent, so the README's test
command passes on a bare laptop; `.ci/run` sets RHETOR_REQUIRE_INTEGRATION=1, which turns
every such skip into a failure.
"""

import os
import socket
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from django.core.cache import cache
from django.db import connection

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def skip_or_fail(reason: str) -> None:
    if os.environ.get("RHETOR_REQUIRE_INTEGRATION") == "1":
        pytest.fail(f"integration test could not run: {reason}")
    pytest.skip(reason)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def postgres_required() -> None:
    """The test database must be PostgreSQL (run with DATABASE_URL=postgres://...)."""
    if connection.vendor != "postgresql":
        skip_or_fail(
            "needs PostgreSQL: run with DATABASE_URL=postgres://postgres@127.0.0.1:5432/test"
        )


PG_ADMIN_URL = os.environ.get("RHETOR_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/test")


def pg_conninfo(url: str) -> str:
    u = urlparse(url)
    parts = [f"host={u.hostname or '127.0.0.1'}", f"port={u.port or 5432}"]
    parts.append(f"user={u.username or 'postgres'}")
    if u.password:
        parts.append(f"password={u.password}")
    parts.append(f"dbname={(u.path or '/postgres').lstrip('/') or 'postgres'}")
    return " ".join(parts)


@pytest.fixture
def scratch_pg_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database for server processes that a test starts
    (they cannot see the test database's transaction); dropped afterwards. Named after
    RHETOR_TEST_DB_NAME and the test, so parallel runs do not collide."""
    try:
        import psycopg

        admin = psycopg.connect(pg_conninfo(PG_ADMIN_URL), autocommit=True, connect_timeout=2)
    except Exception as exc:
        skip_or_fail(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    prefix = os.environ.get("RHETOR_TEST_DB_NAME", "rhetor")
    name = f"{prefix}_{request.node.name}"[:60].lower()
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url() -> str:
    """A reachable Redis server's URL (REDIS_URL, default redis://127.0.0.1:6379/0)."""
    parsed = urlparse(REDIS_URL)
    if not _reachable(parsed.hostname or "127.0.0.1", parsed.port or 6379):
        skip_or_fail(f"needs Redis at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    cache.clear()


@pytest.fixture(autouse=True)
def _reset_circuit_breakers() -> None:
    """The breakers are per process: one test's failing upstream must not open another's."""
    from llm.circuit import breakers

    breakers.reset()

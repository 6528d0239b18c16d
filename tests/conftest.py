"""Project-wide test fixtures.

Integration tests (`@pytest.mark.integration`) need the PostgreSQL and Redis servers on
127.0.0.1. They skip with a visible reason when a server is absent, so the README's test
command passes on a bare laptop; `.ci/run` sets RHETOR_REQUIRE_INTEGRATION=1, which turns
every such skip into a failure.
"""

import os
import socket

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


@pytest.fixture
def redis_url() -> str:
    """A reachable Redis server's URL (REDIS_URL, default redis://127.0.0.1:6379/0)."""
    from urllib.parse import urlparse

    parsed = urlparse(REDIS_URL)
    if not _reachable(parsed.hostname or "127.0.0.1", parsed.port or 6379):
        skip_or_fail(f"needs Redis at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    cache.clear()

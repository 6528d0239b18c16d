"""What a request does when a service Rhetor depends on is down.

The database (PostgreSQL or SQLite) and Redis (the cache and the channel layer when
REDIS_URL is set) can go away under a running server. A request that needs them then
fails with 503 `service_unavailable` (the REST exception handlers and the WebSocket
consumer both use `outage_of`), and the next request after the service returns succeeds:
Django opens a fresh database connection per request (CONN_MAX_AGE = 0, or the pool hands
out only healthy connections), and redis-py reconnects on the next command.

PostgreSQL's connection pool does not test a connection before handing it out (that would
cost a round trip per request), so after an outage its idle connections are dead: the
first database error makes `database_outage_noticed` check the whole pool once, in the
background, and the requests after the database returns get fresh connections.
"""

import logging
import threading

from django.db import Error as DatabaseError
from django.db import InterfaceError, OperationalError, connections

from rhetor_site.errors import RhetorError

logger = logging.getLogger("rhetor")

DATABASE_DOWN = "The database is unavailable; try again shortly"
REDIS_DOWN = "Redis (cache and channel layer) is unavailable; try again shortly"
# What 503 answers tell clients to wait before retrying, seconds.
RETRY_AFTER_SECONDS = 5


class ServiceUnavailable(RhetorError):
    status = 503
    code = "service_unavailable"


def _redis_errors() -> tuple[type[BaseException], ...]:
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:  # pragma: no cover - redis comes with channels-redis
        return ()
    return (RedisConnectionError, RedisTimeoutError)


REDIS_ERRORS = _redis_errors()
# Errors that mean "the database cannot be reached", as opposed to a bad query (which is a
# bug, a 500): Django wraps the driver's connection failures, server restarts, terminated
# backends and pool timeouts in these.
DATABASE_ERRORS: tuple[type[DatabaseError], ...] = (OperationalError, InterfaceError)


def outage_of(exc: BaseException) -> ServiceUnavailable | None:
    """The 503 to answer when `exc` (or what caused it) means a service is down."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DATABASE_ERRORS):
            database_outage_noticed()
            return ServiceUnavailable(DATABASE_DOWN, service="database")
        if REDIS_ERRORS and isinstance(current, REDIS_ERRORS):
            return ServiceUnavailable(REDIS_DOWN, service="redis")
        current = current.__cause__ or current.__context__
    return None


_pool_check = threading.Lock()


def database_outage_noticed() -> None:
    """Drop the pooled connections an outage broke (PostgreSQL with OPTIONS["pool"]), in a
    background thread, at most one check at a time."""
    pools = [
        pool
        for alias in connections
        if (pool := getattr(connections[alias], "pool", None)) is not None
    ]
    if not pools or not _pool_check.acquire(blocking=False):
        return

    def check() -> None:
        try:
            for pool in pools:
                pool.check()
        except Exception:
            logger.debug("checking the connection pool failed", exc_info=True)
        finally:
            _pool_check.release()

    threading.Thread(target=check, name="db-pool-check", daemon=True).start()

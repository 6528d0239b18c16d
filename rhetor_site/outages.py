"""What a request does when a service Rhetor depends on is down.

The database (PostgreSQL or SQLite) and Redis (the cache and the channel layer when
REDIS_URL is set) can go away under a running server. A request that needs them then
fails with 503 `service_unavailable` (the REST exception handlers and the WebSocket
consumer both use `outage_of`), and the next request after the service returns succeeds:
Django opens a fresh database connection per request (CONN_MAX_AGE = 0, or the pool hands
out only healthy connections), and redis-py reconnects on the next command.
"""

from django.db import Error as DatabaseError
from django.db import InterfaceError, OperationalError

from rhetor_site.errors import RhetorError

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
            return ServiceUnavailable(DATABASE_DOWN, service="database")
        if REDIS_ERRORS and isinstance(current, REDIS_ERRORS):
            return ServiceUnavailable(REDIS_DOWN, service="redis")
        current = current.__cause__ or current.__context__
    return None

"""Settling through a database outage: an attempt that reached a provider must not lose its
usage record because the database was briefly unreachable (down, restarting, or its
connections cut)."""

import asyncio
import contextvars
import logging
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections

from budget.models import UsageRecord
from budget.services.settle import abudget_settle, budget_settle
from budget.services.usage import TokenUsage
from rhetor_site.db import released
from rhetor_site.lifecycle import track

logger = logging.getLogger("budget")

# Settles handed to the background because the database stayed away (held so they are not
# garbage-collected; see `pending_settles`).
_pending_settles: set[asyncio.Task[None]] = set()
_UNREACHABLE = (OperationalError, InterfaceError)


def _budget_settle_reconnecting(**kwargs: object) -> UsageRecord:
    # After a failed try the thread's connection may be broken (a terminated backend, a
    # restarted server): replace it, or every retry would fail on the dead one.
    close_old_connections()
    return budget_settle(**kwargs)  # type: ignore[arg-type]


_abudget_settle_reconnecting = sync_to_async(released(_budget_settle_reconnecting))


async def abudget_settle_retrying(
    *,
    reservation_id: int,
    usage: TokenUsage | None,
    status: str,
    latency_ms: int,
    error: str = "",
    patience: float | None = None,
) -> UsageRecord | None:
    """`budget_settle` for an attempt that reached a provider, which must not lose its
    usage record when the database is briefly unreachable (it is down, restarting, or its
    connections were cut). The settle is retried (it is idempotent) with backoff for
    `patience` seconds (RHETOR_SETTLE_RETRY_SECONDS); if the database is still away it
    is handed to a background task that keeps trying until the database answers, and None
    is returned (the caller then does not know the cost yet). Other errors propagate."""
    kwargs: dict[str, object] = {
        "reservation_id": reservation_id,
        "usage": usage,
        "status": status,
        "latency_ms": latency_ms,
        "error": error,
    }
    patience = settings.RHETOR_SETTLE_RETRY_SECONDS if patience is None else patience
    deadline = time.monotonic() + patience
    delay = 0.05
    try:
        return await abudget_settle(**kwargs)  # type: ignore[arg-type]
    except _UNREACHABLE as exc:
        logger.warning("settling reservation %s failed, retrying: %r", reservation_id, exc)
    while (remaining := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 1.0)
        try:
            return await _abudget_settle_reconnecting(**kwargs)
        except _UNREACHABLE:
            continue
    # A fresh context: the task outlives the request, and must not inherit its
    # thread-sensitive executor (asgiref refuses calls through it once the request ended).
    # A graceful shutdown waits for it (`track`).
    task = track(
        asyncio.get_running_loop().create_task(
            _settle_in_background(kwargs), context=contextvars.Context()
        )
    )
    _pending_settles.add(task)
    task.add_done_callback(_pending_settles.discard)
    logger.error(
        "the database is still unreachable; reservation %s will be settled when it returns",
        reservation_id,
    )
    return None


async def _settle_in_background(kwargs: dict[str, object]) -> None:
    delay = 0.5
    while True:
        await asyncio.sleep(delay)
        try:
            await _abudget_settle_reconnecting(**kwargs)
        except _UNREACHABLE:
            delay = min(delay * 2, 30.0)
            continue
        except Exception:
            logger.exception("settling reservation %s failed", kwargs["reservation_id"])
            return
        logger.info("reservation %s settled after the outage", kwargs["reservation_id"])
        return


def pending_settles() -> int:
    """How many settles wait for the database to return (this process)."""
    return len(_pending_settles)


async def await_pending_settles() -> None:
    """Wait until every settle handed to the background is done (tests, shutdown)."""
    while _pending_settles:
        await asyncio.gather(*list(_pending_settles), return_exceptions=True)

"""Exchanges kept through a database outage, written when it returns.

A reply the user saw must not vanish from its conversation because the database was away
when it ended. `astore_exchange` writes the exchange, retrying for
RHETOR_SETTLE_RETRY_SECONDS (as a usage record's settle does); if the database is still
away, the exchange is kept in this process and written by a background task as soon as
the database answers:

- in order: a conversation's later exchanges wait behind its kept ones, even once the
  database is back;
- exactly once: each exchange carries its request id, and a write that finds it stored
  (a COMMIT whose reply was lost) stores nothing twice (context_append_messages);
- visible meanwhile: `kept_messages(context_id)` lists what waits, so this process's
  next request of that conversation still sends it to the model.

What is kept lives in this worker's memory: a worker killed before the database returns
loses it (its usage records are kept the same way and share that limit); a graceful
shutdown waits for it (rhetor_site.lifecycle).
"""

import asyncio
import contextvars
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from contexts.models import Message
from contexts.services import NewMessage, context_append_messages
from rhetor_site.db import released
from rhetor_site.lifecycle import track
from rhetor_site.outages import DATABASE_ERRORS

logger = logging.getLogger("contexts")


@dataclass(frozen=True)
class Exchange:
    context_id: str
    component: str | None
    messages: tuple[NewMessage, ...]
    request_id: uuid.UUID


# context_id -> its kept exchanges, oldest first; a context is here while a writer runs.
_kept: dict[str, deque[Exchange]] = {}
_writers: set["asyncio.Task[None]"] = set()


def _append(exchange: Exchange, *, reconnect: bool) -> list[Message]:
    if reconnect:  # the thread's connection may have died with the outage: replace it
        close_old_connections()
    return context_append_messages(
        context_id=exchange.context_id,
        component=exchange.component,
        messages=list(exchange.messages),
        request_id=exchange.request_id,
    )


_aappend = sync_to_async(released(_append))


async def astore_exchange(exchange: Exchange) -> list[Message] | None:
    """The stored messages; None when the exchange is kept for later (the database is
    away, or earlier exchanges of its conversation still wait)."""
    if exchange.context_id in _kept:
        _keep(exchange)
        return None
    deadline = time.monotonic() + settings.RHETOR_SETTLE_RETRY_SECONDS
    delay, reconnect = 0.05, False
    while True:
        try:
            return await _aappend(exchange, reconnect=reconnect)
        except DATABASE_ERRORS as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                logger.error(
                    "the database is unreachable; the exchange of %r is kept and will be "
                    "stored when it returns: %r",
                    exchange.context_id,
                    exc,
                )
                _keep(exchange)
                return None
            await asyncio.sleep(min(delay, remaining))
            delay, reconnect = min(delay * 2, 1.0), True


def _keep(exchange: Exchange) -> None:
    queue = _kept.get(exchange.context_id)
    if queue is not None:
        queue.append(exchange)
        return
    _kept[exchange.context_id] = deque([exchange])
    # A fresh context: the writer outlives the request that started it.
    writer = asyncio.get_running_loop().create_task(
        _write_kept(exchange.context_id), context=contextvars.Context()
    )
    _writers.add(track(writer))  # held, and waited for by a graceful shutdown
    writer.add_done_callback(_writers.discard)


async def _write_kept(context_id: str) -> None:
    queue = _kept[context_id]
    delay = 0.5
    while queue:
        try:
            await _aappend(queue[0], reconnect=True)
        except DATABASE_ERRORS:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            continue
        except Exception:
            logger.exception("a kept exchange of %r could not be stored", context_id)
        queue.popleft()
        delay = 0.5
    del _kept[context_id]
    logger.info("the kept exchanges of %r are stored", context_id)


def kept_messages(context_id: str) -> list[NewMessage]:
    """The messages of `context_id` that wait to be stored (this process), oldest first."""
    return [m for exchange in _kept.get(context_id, ()) for m in exchange.messages]


def kept_exchanges() -> int:
    """How many exchanges wait for the database (this process)."""
    return sum(len(queue) for queue in _kept.values())

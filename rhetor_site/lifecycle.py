"""A worker process's life: the work that must be written before it exits, and draining.

`finish_soon(coro)` runs the end of a request (its budget settle, its stored exchange) as a
task the process waits for before it exits, even when the request itself was cancelled
(a client that went away, a shutdown): `await asyncio.shield(finish_soon(...))`.

On a graceful shutdown (rhetor_site/worker.py) the worker is `draining`: `/health` answers
503 so a load balancer stops sending it requests, the callbacks registered with
`on_drain` let long-lived connections (WebSockets) finish and close, and `finished()`
waits for every task of `finish_soon`.
"""

import asyncio
import logging
import weakref
from collections.abc import Coroutine
from typing import Any, TypeVar

logger = logging.getLogger("rhetor")

T = TypeVar("T")

# After a shutdown's grace, how long the requests it cut may take to be written.
FINISH_SECONDS = 30.0

_finishing: set["asyncio.Task[Any]"] = set()
_drainers: "weakref.WeakSet[Any]" = weakref.WeakSet()
_draining = False


def finish_soon(coro: Coroutine[Any, Any, T]) -> "asyncio.Task[T]":
    """Run `coro` as a task that the worker waits for before it exits."""
    return track(asyncio.ensure_future(coro))


def track(task: "asyncio.Task[T]") -> "asyncio.Task[T]":
    """Have the worker wait for `task` before it exits (e.g. a write that waits for the
    database to return)."""
    _finishing.add(task)
    task.add_done_callback(_finishing.discard)
    return task


async def finished(*, within: float) -> int:
    """Wait (at most `within` seconds) for the tasks of `finish_soon`; the number left."""
    pending = [t for t in _finishing if not t.done()]
    if pending:
        _done, still = await asyncio.wait(pending, timeout=within)
        if still:
            logger.error("%d request endings were not written before the exit", len(still))
        return len(still)
    return 0


def is_draining() -> bool:
    return _draining


def start_draining() -> None:
    global _draining
    _draining = True


class Drainable:
    """Something long-lived (a WebSocket consumer) that finishes its work and closes when
    the worker drains. Register it with `on_drain`; it is held weakly."""

    async def drain(self, deadline: float) -> None:  # pragma: no cover - an interface
        raise NotImplementedError


def on_drain(item: Drainable) -> None:
    _drainers.add(item)


async def drain_all(deadline: float) -> None:
    """Ask every registered Drainable to finish by `deadline` (the loop's time)."""
    items = list(_drainers)
    if items:
        await asyncio.gather(*(item.drain(deadline) for item in items), return_exceptions=True)

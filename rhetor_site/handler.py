"""Django's ASGI handler, with each request's thread taken from a pool instead of new.

Django runs every HTTP request in its own `ThreadSensitiveContext`, so that request's
synchronous work (ORM calls through `sync_to_async`) stays on one thread; asgiref makes a
new single-thread executor, and so a new thread, for every request, and shuts it down at
the end. A new thread also means a new database connection (Django's connections are
per thread): on SQLite that is a file open plus the PRAGMAs of `init_command` on every
request. Here the request gets an idle executor from a pool and gives it back after, so
threads and their connections are reused; the request still has its thread to itself
while it runs (asgiref's `ThreadSensitiveContext(executor=...)`), exactly Django's
guarantee. A burst of more concurrent requests than the pool keeps idle simply creates
more executors; only `IDLE_EXECUTORS` of them are kept when the burst is over.
"""

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler

# Idle request threads kept per process (each holds its thread's database connection).
IDLE_EXECUTORS = 64


class ExecutorPool:
    """Single-thread executors for requests: lease one, give it back when done."""

    def __init__(self, keep: int = IDLE_EXECUTORS) -> None:
        self.keep = keep
        self._idle: list[ThreadPoolExecutor] = []
        self.created = 0

    def lease(self) -> ThreadPoolExecutor:
        if self._idle:
            return self._idle.pop()
        self.created += 1
        return ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"rhetor-request-{self.created}"
        )

    def give_back(self, executor: ThreadPoolExecutor) -> None:
        if len(self._idle) < self.keep:
            self._idle.append(executor)
        else:
            executor.shutdown(wait=False)

    @property
    def idle(self) -> int:
        return len(self._idle)


class PooledThreadsASGIHandler(ASGIHandler):
    """`ASGIHandler` whose requests run their sync work on a reused thread."""

    def __init__(self) -> None:
        super().__init__()
        self.executors = ExecutorPool()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        executor = self.executors.lease()
        try:
            # The outermost context decides the executor; Django's own (inside) adds none.
            async with ThreadSensitiveContext(executor=executor):
                await super().__call__(scope, receive, send)
        finally:
            self.executors.give_back(executor)


def get_asgi_application() -> PooledThreadsASGIHandler:
    """`django.core.asgi.get_asgi_application`, with the pooled-thread handler."""
    import django

    django.setup(set_prefix=False)
    return PooledThreadsASGIHandler()

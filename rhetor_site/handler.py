"""Django's ASGI handler, with each request's thread taken from a pool instead of new.

Django runs every HTTP request in its own `ThreadSensitiveContext`, so that request's
synchronous work (ORM calls through `sync_to_async`) stays on one thread; asgiref makes a
new single-thread executor, and so a new thread, for every request, and shuts it down at
the end. A new thread also means a new database connection (Django's connections are
per thread): on SQLite that is a file open plus the PRAGMAs of `init_command` on every
request. Here the request gets an idle executor from a pool and gives it back after, so
threads and their connections are reused; the request still has its thread to itself
while it runs, exactly Django's guarantee. A burst of more concurrent requests than the
pool keeps idle creates more executors; only `IDLE_EXECUTORS` are kept after it.
"""

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import SyncToAsync, ThreadSensitiveContext
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
        # The outermost context decides the executor; Django's own (inside) adds none. The
        # leased executor is lent to the context for the request and taken back before
        # the context's exit, which would shut it down. A task that outlives the request
        # (a shielded settle after a client went away) then gets a thread of its own from
        # asgiref, as with Django's stock handler, instead of an error or a thread that
        # is already serving the next request.
        context = ThreadSensitiveContext()
        try:
            async with context:
                SyncToAsync.context_to_thread_executor[context] = executor
                try:
                    await super().__call__(scope, receive, send)
                finally:
                    SyncToAsync.context_to_thread_executor.pop(context, None)
        finally:
            self.executors.give_back(executor)


def get_asgi_application() -> PooledThreadsASGIHandler:
    """`django.core.asgi.get_asgi_application`, with the pooled-thread handler."""
    import django

    django.setup(set_prefix=False)
    return PooledThreadsASGIHandler()

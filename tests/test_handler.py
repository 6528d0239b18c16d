"""The ASGI handler reuses request threads (rhetor_site/handler.py) and still gives each
request a thread of its own while it runs."""

import asyncio
import contextvars
import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.signals import request_started

from rhetor_site.handler import ExecutorPool, PooledThreadsASGIHandler

pytestmark = pytest.mark.django_db(transaction=True)


async def get(handler: PooledThreadsASGIHandler, path: str) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8300),
    }
    sent: list[dict[str, Any]] = []
    requests = iter([{"type": "http.request", "body": b"", "more_body": False}])

    async def receive() -> dict[str, Any]:
        try:
            return next(requests)
        except StopIteration:
            await asyncio.Event().wait()  # the client stays connected
            raise AssertionError("unreachable") from None

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await handler(scope, receive, send)
    return int(sent[0]["status"])


class ThreadsSeen:
    """The thread each request's synchronous work ran on (request_started's receiver is
    sync, so Django runs it on the request's thread)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.idents: list[int] = []
        self.gate: threading.Event | None = None

    def __call__(self, **kwargs: object) -> None:
        self.names.append(threading.current_thread().name)
        self.idents.append(threading.get_ident())
        if self.gate is not None:
            self.gate.wait(5)


@pytest.fixture
def threads_seen() -> Any:
    seen = ThreadsSeen()
    request_started.connect(seen, dispatch_uid="test-handler-threads")
    yield seen
    request_started.disconnect(dispatch_uid="test-handler-threads")


async def test_sequential_requests_reuse_one_thread(threads_seen: ThreadsSeen) -> None:
    handler = PooledThreadsASGIHandler()
    statuses = [await get(handler, "/health") for _ in range(3)]
    assert statuses == [200, 200, 200]
    assert handler.executors.created == 1
    assert handler.executors.idle == 1
    assert len(set(threads_seen.idents)) == 1
    assert threads_seen.names[0].startswith("rhetor-request")


async def test_concurrent_requests_get_threads_of_their_own(threads_seen: ThreadsSeen) -> None:
    handler = PooledThreadsASGIHandler()
    # Both requests' sync work blocks until the second one has started: only possible
    # when each has its own thread.
    threads_seen.gate = threading.Event()
    first = asyncio.create_task(get(handler, "/health"))
    second = asyncio.create_task(get(handler, "/health"))
    while len(threads_seen.names) < 2:
        await asyncio.sleep(0.01)
    threads_seen.gate.set()
    assert await first == 200
    assert await second == 200
    assert len(set(threads_seen.idents)) == 2
    assert handler.executors.created == 2
    # Both executors are kept for the next requests.
    assert handler.executors.idle == 2
    threads_seen.gate = None
    await get(handler, "/health")
    assert handler.executors.created == 2


async def test_a_task_that_outlives_its_request_still_runs_its_sync_work() -> None:
    """A shielded settle can outlive its request (the client went away). Its sync calls
    must neither fail nor land on the thread that now serves another request."""
    handler = PooledThreadsASGIHandler()
    loop = asyncio.get_running_loop()
    request_over = asyncio.Event()
    outcome: list[object] = []

    async def straggler() -> None:
        await request_over.wait()
        try:
            outcome.append(await sync_to_async(threading.get_ident)())
        except RuntimeError as exc:  # pragma: no cover - the failure this test guards
            outcome.append(exc)

    def spawn(**kwargs: object) -> None:
        # In the request's thread: a task in the request's context (as asyncio.shield
        # would create one inside the view).
        context = contextvars.copy_context()
        request_threads.append(threading.get_ident())
        loop.call_soon_threadsafe(
            lambda: tasks.append(loop.create_task(straggler(), context=context))
        )

    request_threads: list[int] = []
    tasks: list[asyncio.Task[None]] = []
    request_started.connect(spawn, dispatch_uid="test-handler-straggler")
    try:
        assert await get(handler, "/health") == 200
    finally:
        request_started.disconnect(dispatch_uid="test-handler-straggler")
    request_over.set()
    await asyncio.wait_for(tasks[0], 5)

    [ident] = outcome
    assert isinstance(ident, int)
    assert ident != request_threads[0]  # that thread is back in the pool
    assert handler.executors.idle == 1


def test_the_pool_keeps_only_so_many_idle_executors() -> None:
    pool = ExecutorPool(keep=1)
    a, b = pool.lease(), pool.lease()
    pool.give_back(a)
    pool.give_back(b)
    assert pool.idle == 1
    assert pool.lease() is a
    # The surplus one was shut down: it takes no more work.
    with pytest.raises(RuntimeError):
        b.submit(print)

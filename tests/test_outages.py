"""The database or Redis goes away under a running Rhetor: requests fail cleanly with 503
`service_unavailable` (never a 500), Rhetor recovers by itself when the service returns,
and a request that was served keeps its usage record.

The first tests simulate the outage on any database (every statement fails as it does when
the server cannot be reached); the integration tests cut real PostgreSQL and Redis off
through a TCP proxy (tests/fakes/proxy.py) and let them back.
"""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import OperationalError, connection, connections
from django.db.backends import utils as db_utils
from django.test import AsyncClient

from budget.models import BudgetReservation, UsageRecord
from budget.services import await_pending_settles, pending_settles
from contexts.models import Message
from contexts.outbox import Exchange, astore_exchange, kept_messages
from contexts.services import NewMessage
from llm.providers import reset_providers
from rhetor_site.handler import PooledThreadsASGIHandler
from rhetor_site.routing import websocket_urlpatterns
from tests.fakes.proxy import TcpProxy

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

DOWN = {"code": "service_unavailable", "service": "database"}
PROBE_KEY = f"rhetor-outage-probe-{uuid.uuid4().hex}"


class SimulatedDatabaseOutage:
    """While down, every SQL statement fails with the OperationalError a driver raises
    for a server it cannot reach, on every thread."""

    def __init__(self) -> None:
        self._execute = db_utils.CursorWrapper._execute
        self._executemany = db_utils.CursorWrapper._executemany

    def down(self) -> None:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise OperationalError("could not connect to server: Connection refused")

        db_utils.CursorWrapper._execute = refuse  # type: ignore[method-assign]
        db_utils.CursorWrapper._executemany = refuse  # type: ignore[method-assign]

    def up(self) -> None:
        db_utils.CursorWrapper._execute = self._execute  # type: ignore[method-assign]
        db_utils.CursorWrapper._executemany = self._executemany  # type: ignore[method-assign]


@pytest.fixture
def database() -> Iterator[SimulatedDatabaseOutage]:
    outage = SimulatedDatabaseOutage()
    yield outage
    outage.up()


async def post(path: str, body: dict[str, Any]) -> Any:
    return await AsyncClient().post(path, json.dumps(body), content_type="application/json")


async def read_events(response: Any) -> list[dict[str, Any]]:
    raw = b"".join([c async for c in response.streaming_content]).decode()
    return [json.loads(f[len("data: ") :]) for f in raw.split("\n\n") if f.strip()]


REQUESTS = [
    ("POST", "/message", {"message": "Hi", "context_id": "ergon:outage"}),
    ("POST", "/chat", {"messages": [{"role": "user", "content": "Hi"}]}),
    ("POST", "/stream", {"message": "Hi"}),
    ("GET", "/templates", None),
    ("GET", "/prompts", None),
    ("GET", "/contexts", None),
    ("GET", "/budget", None),
    ("GET", "/budget/usage", None),
]


async def send(method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
    """One request through the ASGI handler daphne runs (rhetor_site/handler.py): each
    request on a thread of its own, connections checked and closed at its start and end
    (the test client skips that, so it would never see a recovery)."""
    transport = httpx.ASGITransport(app=PooledThreadsASGIHandler())  # not django.setup() again
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        return await client.request(method, path, json=body)


async def test_every_endpoint_answers_503_while_the_database_is_down_and_recovers(
    database: SimulatedDatabaseOutage,
) -> None:
    database.down()
    during = [await send(*request) for request in REQUESTS]
    health = await send("GET", "/health", None)
    database.up()
    after = [await send(*request) for request in REQUESTS]

    for (_, path, _), response in zip(REQUESTS, during, strict=True):
        assert response.status_code == 503, path
        assert response.json() == {**DOWN, "error": response.json()["error"]}, path
        assert "database is unavailable" in response.json()["error"]
        assert response.headers["Retry-After"] == "5"
    assert health.status_code == 503
    assert health.json()["status"] == "unhealthy"
    assert [r.status_code for r in after] == [200] * len(REQUESTS)
    assert await BudgetReservation.objects.filter(state="held").aexists() is False


async def test_a_websocket_request_gets_an_error_frame_while_the_database_is_down(
    database: SimulatedDatabaseOutage,
) -> None:
    ws = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws")
    connected, _ = await ws.connect()
    assert connected
    try:
        database.down()
        request = {"message": "Hi", "context": "ergon", "streaming": False}
        await ws.send_json_to({"type": "LLM_REQUEST", "payload": request, "req_id": "1"})
        frames = [await ws.receive_json_from(timeout=5) for _ in range(3)]
        database.up()
        await ws.send_json_to({"type": "LLM_REQUEST", "payload": request, "req_id": "2"})
        again = [await ws.receive_json_from(timeout=5) for _ in range(3)]
    finally:
        await ws.disconnect()

    typing_on, error, typing_off = frames
    assert typing_on["payload"]["isTyping"] is True
    assert error["type"] == "ERROR"
    assert error["req_id"] == "1"
    assert error["payload"]["code"] == "service_unavailable"
    assert error["payload"]["context"] == "ergon"
    assert typing_off["payload"]["isTyping"] is False
    assert again[1]["type"] == "RESPONSE"  # the same socket, served once the database is back
    assert again[1]["payload"]["provider"] == "simulated"


@pytest.fixture
async def slow_simulated(settings: Any) -> AsyncIterator[None]:
    settings.RHETOR_SIMULATED_DELAY = 0.02
    await reset_providers()
    yield
    await reset_providers()


async def test_a_stream_served_while_the_database_blinks_keeps_its_usage_record(
    database: SimulatedDatabaseOutage, slow_simulated: None, settings: Any
) -> None:
    settings.RHETOR_SETTLE_RETRY_SECONDS = 10.0
    response = await post("/stream", {"message": "Tell me a long story", "context_id": "blink"})
    database.down()  # after the reservation, before the settle
    asyncio.get_running_loop().call_later(0.4, database.up)

    events = await read_events(response)

    done = events[-1]
    assert done["done"] is True
    assert "error" not in done
    assert done["usage"]["cost"] is not None
    [record] = [r async for r in UsageRecord.objects.all()]
    assert (record.status, record.provider) == ("ok", "simulated")
    assert record.output_tokens == done["usage"]["output_tokens"]
    assert await BudgetReservation.objects.filter(state="held").aexists() is False


async def test_a_usage_record_is_written_when_the_database_returns_after_the_reply(
    database: SimulatedDatabaseOutage, slow_simulated: None, settings: Any
) -> None:
    settings.RHETOR_SETTLE_RETRY_SECONDS = 0.1
    response = await post("/stream", {"message": "Tell me a long story", "context_id": "gone"})
    database.down()

    events = await read_events(response)

    # The client got its whole answer; the cost is not known yet.
    assert events[-1]["done"] is True
    assert "error" not in events[-1]
    assert events[-1]["usage"]["cost"] is None
    assert pending_settles() == 1
    database.up()
    await asyncio.wait_for(await_pending_settles(), timeout=10)
    [record] = [r async for r in UsageRecord.objects.all()]
    assert record.status == "ok"
    assert record.output_tokens == events[-1]["usage"]["output_tokens"]
    assert await BudgetReservation.objects.filter(state="held").aexists() is False


async def test_a_settle_left_to_the_background_outlives_the_request_that_started_it(
    database: SimulatedDatabaseOutage, slow_simulated: None, settings: Any
) -> None:
    """Through the server's handler, whose request threads are reused: the background
    settle must not run on (or ask for) the finished request's thread."""
    settings.RHETOR_SETTLE_RETRY_SECONDS = 0.1
    body = {"message": "Tell me a long story", "context_id": "later"}
    request = asyncio.create_task(send("POST", "/stream", body))
    # The database goes away once the reservation is held, while the reply streams.
    while not await BudgetReservation.objects.filter(state="held").aexists():
        await asyncio.sleep(0.01)
    database.down()
    raw = (await request).text
    events = [json.loads(f[len("data: ") :]) for f in raw.split("\n\n") if f.strip()]

    assert events[-1]["done"] is True
    assert events[-1]["usage"]["cost"] is None
    assert pending_settles() == 1
    database.up()
    await asyncio.wait_for(await_pending_settles(), timeout=10)
    [record] = [r async for r in UsageRecord.objects.all()]
    assert record.status == "ok"
    assert record.output_tokens == events[-1]["usage"]["output_tokens"]
    assert await BudgetReservation.objects.filter(state="held").aexists() is False


async def test_an_exchange_answered_during_an_outage_is_stored_when_the_database_returns(
    database: SimulatedDatabaseOutage, slow_simulated: None, settings: Any
) -> None:
    settings.RHETOR_SETTLE_RETRY_SECONDS = 0.1
    first = await post("/stream", {"message": "Remember the word teal", "context_id": "keep"})
    database.down()
    events = await read_events(first)
    # The client got its answer, told that its turn waits for the database.
    assert events[-1]["done"] is True
    assert events[-1]["exchange_pending"] is True
    kept = kept_messages("keep")
    assert [(m.role, m.content) for m in kept][:1] == [("user", "Remember the word teal")]
    assert [m.role for m in kept] == ["user", "assistant"]

    database.up()
    while kept_messages("keep"):  # the kept exchange is written once the database answers
        await asyncio.sleep(0.05)
    await asyncio.wait_for(await_pending_settles(), timeout=10)
    second = await post("/message", {"message": "Which word?", "context_id": "keep"})

    assert second.status_code == 200
    assert "exchange_pending" not in second.json()
    stored = [
        (m.role, m.content[:22])
        async for m in Message.objects.filter(context__context_id="keep").order_by("seq")
    ]
    # In order, exactly once: the kept turn, its reply, then the next turn and its reply.
    assert [role for role, _ in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[0][1] == "Remember the word teal"
    assert stored[2][1] == "Which word?"
    assert await UsageRecord.objects.acount() == 2


async def test_a_stored_exchange_is_not_stored_twice_when_its_write_is_retried() -> None:
    """A COMMIT whose reply was lost looks like a failure: the retry finds the request's
    messages and writes nothing."""
    exchange = Exchange(
        context_id="ergon:once",
        component="ergon",
        messages=(NewMessage("user", "Hi"), NewMessage("assistant", "Hello")),
        request_id=uuid.uuid4(),
    )

    first = await astore_exchange(exchange)
    again = await astore_exchange(exchange)

    assert first is not None
    assert again is not None
    assert [m.pk for m in again] == [m.pk for m in first]
    assert await Message.objects.filter(context__context_id="ergon:once").acount() == 2


# --- Real servers cut off through a proxy ------------------------------------------------------


@pytest.fixture
def _postgres_proxy(postgres_required: None) -> Iterator[TcpProxy]:
    settings_dict = connection.settings_dict
    saved_port, saved_pool = settings_dict["PORT"], settings_dict["OPTIONS"].get("pool")
    proxy = TcpProxy(settings_dict["HOST"] or "127.0.0.1", int(settings_dict["PORT"] or 5432))
    proxy.start()

    def repoint(port: int | str, pool: Any) -> None:
        connection.close()
        connection.close_pool()
        settings_dict["PORT"] = port
        settings_dict["OPTIONS"]["pool"] = pool

    repoint(proxy.port, {"timeout": 1.0, "min_size": 2})
    try:
        yield proxy
    finally:
        proxy.up()
        repoint(saved_port, saved_pool)
        proxy.stop()


@pytest.fixture
async def postgres_behind_proxy(_postgres_proxy: TcpProxy) -> AsyncIterator[TcpProxy]:
    """Every database connection of this test goes through a proxy that the test can take
    down; the pool waits 1 s for a connection instead of 10. (The test client keeps the
    connection of the thread the views run on open across requests: it is closed here so
    the next one goes through the proxy, and again at the end.)"""
    await sync_to_async(connections.close_all)()
    yield _postgres_proxy
    _postgres_proxy.up()
    await sync_to_async(connections.close_all)()


async def eventually_ok(method: str, path: str, body: dict[str, Any] | None) -> list[int]:
    """Statuses until the first 200 (at most 10 tries, 0.2 s apart)."""
    statuses = []
    for _ in range(10):
        response = await send(method, path, body)
        statuses.append(response.status_code)
        if response.status_code == 200:
            break
        assert response.json()["code"] == "service_unavailable"
        await asyncio.sleep(0.2)
    return statuses


@pytest.mark.integration
async def test_postgresql_cut_off_answers_503_and_recovers(
    postgres_behind_proxy: TcpProxy,
) -> None:
    message = ("POST", "/message", {"message": "Hi", "context_id": "ergon:pg"})
    assert (await send(*message)).status_code == 200

    postgres_behind_proxy.down()
    started = time.monotonic()
    during = await send(*message)
    failed_in = time.monotonic() - started
    listing = await send("GET", "/templates", None)
    started = time.monotonic()
    health = await send("GET", "/health", None)
    health_in = time.monotonic() - started
    postgres_behind_proxy.up()
    recovered = await eventually_ok(*message)  # the pool reconnects by itself
    after = [(await send(*message)).status_code for _ in range(3)]

    assert during.status_code == listing.status_code == 503
    assert during.json()["code"] == listing.json()["code"] == "service_unavailable"
    assert during.headers["Retry-After"]
    assert failed_in < 2.5  # fails fast: not the pool's old 10 s
    assert health.status_code == 503
    assert health_in < 1.2
    # The pooled connections the outage broke are checked before use: no restart, and no
    # request fails once the database answers again (they used to: 503 503 200 200).
    assert recovered[-1] == 200
    assert after == [200, 200, 200]
    assert await sync_to_async(UsageRecord.objects.filter(status="ok").count)() == 5
    assert await BudgetReservation.objects.filter(state="held").aexists() is False


@pytest.mark.integration
async def test_postgresql_cut_off_mid_stream_keeps_the_usage_record(
    postgres_behind_proxy: TcpProxy, slow_simulated: None, settings: Any
) -> None:
    settings.RHETOR_SETTLE_RETRY_SECONDS = 10.0
    response = await post("/stream", {"message": "Tell me a long story", "context_id": "pg"})
    postgres_behind_proxy.down()
    asyncio.get_running_loop().call_later(1.5, postgres_behind_proxy.up)

    events = await read_events(response)

    assert events[-1]["done"] is True
    assert "error" not in events[-1]
    [record] = [r async for r in UsageRecord.objects.all()]
    assert record.status == "ok"
    assert record.output_tokens == events[-1]["usage"]["output_tokens"]
    assert await BudgetReservation.objects.filter(state="held").aexists() is False


@pytest.fixture
def redis_behind_proxy(redis_url: str, settings: Any) -> Iterator[TcpProxy]:
    """The cache and the channel layer on a real Redis, through a proxy."""
    parsed = urlparse(redis_url)
    with TcpProxy(parsed.hostname or "127.0.0.1", parsed.port or 6379) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}{parsed.path or '/0'}"
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": url,
                "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
            }
        }
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [url], "prefix": "rhetor-outage-test"},
            }
        }
        yield proxy


@pytest.mark.integration
async def test_redis_down_fails_cleanly_and_recovers(redis_behind_proxy: TcpProxy) -> None:
    from django.core.cache import cache

    await cache.aset(PROBE_KEY, 1)
    redis_behind_proxy.down()
    during = [await send(*request) for request in REQUESTS]
    ws = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws")
    connected, _ = await ws.connect()
    assert connected
    try:
        await ws.send_json_to({"type": "SUBSCRIBE", "payload": {"context": "ergon"}})
        subscribe = await ws.receive_json_from(timeout=5)
        await ws.send_json_to({"type": "REGISTER", "payload": {"component_id": "ergon"}})
        register = await ws.receive_json_from(timeout=5)
    finally:
        await ws.disconnect()
    redis_behind_proxy.up()
    after = [await send(*request) for request in REQUESTS]

    for (_, path, _), response in zip(REQUESTS, during, strict=True):
        # Served without Redis, or refused cleanly: never a 500.
        assert response.status_code in (200, 503), path
        if response.status_code == 503:
            assert response.json()["code"] == "service_unavailable", path
    assert subscribe["type"] == "ERROR"
    assert subscribe["payload"]["code"] == "service_unavailable"
    assert register["type"] == "RESPONSE"  # the socket stayed open
    assert [r.status_code for r in after] == [200] * len(REQUESTS)
    assert await cache.aget(PROBE_KEY) == 1
    assert await BudgetReservation.objects.filter(state="held").aexists() is False

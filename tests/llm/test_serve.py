"""End to end through a real server: `manage.py serve` (daphne workers behind one port),
a real HTTP client, a real WebSocket client, and Hermes registration around it."""

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.llm.test_hermes import FakeHermes
from tests.servers import serve, stop_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, FakeHermes, subprocess.Popen[bytes]]]:
    hermes = FakeHermes()
    hermes.start()
    url, process = serve(tmp_path, {"HERMES_API_URL": f"http://127.0.0.1:{hermes.port}"})
    yield url, hermes, process
    stop_server(process)
    hermes.stop()


def test_real_server_serves_http_websocket_and_registers_with_hermes(server) -> None:  # type: ignore[no-untyped-def]
    url, hermes, process = server

    reply = httpx.post(f"{url}/message", json={"message": "Hi", "context_id": "e2e"}, timeout=10)
    static = httpx.get(f"{url}/static/admin/css/base.css", timeout=5)

    async def websocket_exchange() -> list[dict[str, object]]:
        frames = []
        async with websockets.connect(url.replace("http", "ws") + "/ws") as ws:
            await ws.send(
                json.dumps({"type": "LLM_REQUEST", "payload": {"message": "Yo", "context": "e2e"}})
            )
            while True:
                frame = json.loads(await ws.recv())
                frames.append(frame)
                if frame["payload"].get("isTyping") is False:
                    return frames

    import asyncio

    frames = asyncio.run(websocket_exchange())
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=15)

    assert reply.status_code == 200
    assert reply.json()["context"] == "e2e"
    assert static.status_code == 200
    assert "text/css" in static.headers["content-type"]
    assert frames[0]["payload"]["isTyping"] is True
    assert any(f["payload"].get("done") is True for f in frames)
    assert hermes.paths()[0] == "/api/register"
    assert hermes.paths()[-1] == "/api/unregister"
    assert hermes.known == set()


@pytest.mark.integration
def test_subscriber_on_one_process_sees_messages_appended_through_another(  # type: ignore[no-untyped-def]
    tmp_path: Path, redis_url: str
) -> None:
    shared = {"REDIS_URL": redis_url}
    url_a, process_a = serve(tmp_path, shared)
    url_b, process_b = serve(tmp_path, shared)
    context = f"ergon:live-{time.monotonic_ns()}"

    async def subscribe_then_post() -> list[dict[str, object]]:
        seen = []
        async with websockets.connect(url_a.replace("http", "ws") + "/ws") as ws:
            await ws.send(json.dumps({"type": "SUBSCRIBE", "payload": {"context": context}}))
            ack = json.loads(await ws.recv())
            assert ack["payload"]["status"] == "subscribed"
            async with httpx.AsyncClient() as client:
                reply = await client.post(
                    f"{url_b}/message", json={"message": "from B", "context_id": context}
                )
                assert reply.status_code == 200
            while len(seen) < 2:
                seen.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=10)))
        return seen

    import asyncio

    try:
        frames = asyncio.run(subscribe_then_post())
    finally:
        stop_server(process_a)
        stop_server(process_b)

    assert [f["payload"]["role"] for f in frames] == ["user", "assistant"]  # type: ignore[index]
    assert frames[0]["payload"]["message"] == "from B"  # type: ignore[index]
    assert all(f["payload"]["context"] == context for f in frames)  # type: ignore[index]

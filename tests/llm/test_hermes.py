"""Hermes registration, heartbeats, re-registration and shutdown against a fake Hermes."""

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from llm.hermes import HermesRegistrar


class FakeHermes:
    """A loopback Hermes that records calls and can forget registrations or go down."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.known: set[str] = set()
        self.counter = 0
        self.server: ThreadingHTTPServer | None = None
        self.port = 0

    def start(self, port: int = 0) -> None:
        hermes = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                hermes.calls.append((url.path, body or query, dict(self.headers)))
                status, answer = hermes.answer(url.path, body, query, self.headers)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def answer(
        self, path: str, body: dict[str, Any], query: dict[str, str], headers: Any
    ) -> tuple[int, dict[str, Any]]:
        if path == "/api/register":
            self.counter += 1
            cid = f"rhetor-{self.counter}"
            self.known.add(cid)
            return 200, {
                "success": True,
                "component_id": cid,
                "token": f"tok-{cid}",
                "message": "ok",
            }
        cid = body.get("component_id") or query.get("component_id")
        if headers.get("X-Authentication-Token") != f"tok-{cid}" or cid not in self.known:
            return 404, {"success": False, "message": "unknown component"}
        if path == "/api/unregister":
            self.known.discard(cid)
        return 200, {"success": True}

    def paths(self) -> list[str]:
        return [c[0] for c in self.calls]


@pytest.fixture
def hermes() -> Iterator[FakeHermes]:
    fake = FakeHermes()
    fake.start()
    yield fake
    fake.stop()


def registrar(port: int) -> HermesRegistrar:
    return HermesRegistrar(
        base_url=f"http://127.0.0.1:{port}",
        host="127.0.0.1",
        port=8300,
        heartbeat_seconds=0.05,
        backoff_start=0.02,
        backoff_max=0.05,
        timeout=1.0,
    )


async def run_for(reg: HermesRegistrar, seconds: float, during: Any = None) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(reg.run(stop))
    if during is not None:
        await during()
    await asyncio.sleep(seconds)
    stop.set()
    await task


async def test_registers_heartbeats_and_unregisters(hermes: FakeHermes) -> None:
    await run_for(registrar(hermes.port), 0.2)

    paths = hermes.paths()
    assert paths[0] == "/api/register"
    assert paths.count("/api/register") == 1
    assert paths.count("/api/heartbeat") >= 2
    assert paths[-1] == "/api/unregister"
    register_body = hermes.calls[0][1]
    assert register_body["name"] == "rhetor"
    assert register_body["type"] == "rhetor"
    assert register_body["endpoint"] == "http://127.0.0.1:8300"
    assert register_body["capabilities"] == [
        "llm_management",
        "prompt_engineering",
        "context_management",
        "model_selection",
    ]
    assert register_body["metadata"]["endpoints"]["ws"] == "ws://127.0.0.1:8300/ws"
    assert register_body["metadata"]["replaces"] == "llm_adapter"
    heartbeat = next(c for c in hermes.calls if c[0] == "/api/heartbeat")
    assert heartbeat[1] == {"component_id": "rhetor-1", "status": {"health": "healthy"}}
    assert heartbeat[2]["X-Authentication-Token"] == "tok-rhetor-1"
    unregister = hermes.calls[-1]
    assert unregister[1] == {"component_id": "rhetor-1"}
    assert hermes.known == set()


async def test_registers_again_when_hermes_forgets(hermes: FakeHermes) -> None:
    async def forget() -> None:
        await asyncio.sleep(0.08)
        hermes.known.clear()

    await run_for(registrar(hermes.port), 0.25, during=forget)

    assert hermes.paths().count("/api/register") == 2
    assert "rhetor-2" in {c[1].get("component_id") for c in hermes.calls}


async def test_hermes_down_is_logged_once_retried_and_then_registered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import socket

    with socket.socket() as probe:  # a free port where nothing listens yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fake = FakeHermes()

    async def come_up_later() -> None:
        await asyncio.sleep(0.2)
        fake.start(port)

    caplog.set_level(logging.DEBUG, logger="rhetor.hermes")
    try:
        await run_for(registrar(port), 0.3, during=come_up_later)
    finally:
        fake.stop()

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot reach Hermes" in warnings[0].getMessage()
    assert fake.paths()[0] == "/api/register"
    assert fake.paths()[-1] == "/api/unregister"

"""Fixtures of the contexts tests: conversations built through the services, a fake
Engram server, and real providers pointed at the fake LLM upstream."""

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from contexts.models import Message
from contexts.services import NewMessage, context_append_messages


def add_turns(context_id: str, turns: list[tuple[str, str]], tokens: int = 0) -> list[Message]:
    return context_append_messages(
        context_id=context_id,
        component=None,
        messages=[NewMessage(role, content, tokens=tokens) for role, content in turns],
    )


def conversation(n: int, words: int = 20) -> list[tuple[str, str]]:
    """n alternating user/assistant turns, each numbered and `words` long."""
    turns = []
    for i in range(n):
        role = "user" if i % 2 == 0 else "assistant"
        turns.append((role, f"turn {i} " + " ".join(f"word{i}x{j}" for j in range(words))))
    return turns


@dataclass
class FakeEngram:
    """A local Engram: records stored/deleted memories; `mode` is "up", "slow" or "down"
    ("down" answers 503; `stop()` closes the port)."""

    delay: float = 2.0
    mode: str = "up"
    stored: dict[str, Any] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FakeEngram":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _gate(self) -> bool:
                fake.requests.append((self.command, self.path))
                if fake.mode == "slow":
                    time.sleep(fake.delay)
                if fake.mode == "down":
                    self._answer(503, {"error": "down"})
                    return False
                return True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                if not self._gate():
                    return
                assert self.path == "/memory/rhetor_contexts"
                fake.stored[body["key"]] = body["data"]
                self._answer(200, {"success": True})

            def do_DELETE(self) -> None:
                if not self._gate():
                    return
                from urllib.parse import unquote

                key = unquote(self.path.rsplit("/", 1)[1])
                fake.deleted.append(key)
                found = fake.stored.pop(key, None)
                self._answer(200 if found is not None else 404, {"success": True})

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def fake_engram() -> Iterator[FakeEngram]:
    engram = FakeEngram().start()
    yield engram
    engram.stop()

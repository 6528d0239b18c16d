"""A live Rhetor for the Python clients: `manage.py serve` (daphne) in a subprocess on a
SQLite file, spoken to over real HTTP on loopback."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.servers import serve, stop_server


@pytest.fixture(scope="package")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, process = serve(tmp_path_factory.mktemp("client-server"))
    yield url
    stop_server(process)


class FakeHermesRegistry:
    """A loopback Hermes whose `GET /api/components` lists what `components` holds."""

    def __init__(self, components: Any) -> None:
        self.components = components
        self.requests: list[str] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                registry.requests.append(self.path)
                if self.path == "/api/components":
                    status, data = 200, json.dumps(registry.components).encode()
                else:
                    status, data = 404, b'{"detail": "Not Found"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_hermes() -> Iterator[FakeHermesRegistry]:
    hermes = FakeHermesRegistry([])
    yield hermes
    hermes.stop()

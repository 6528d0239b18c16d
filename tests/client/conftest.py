"""A live Rhetor for the Python clients: `manage.py serve` (daphne) in a subprocess on a
SQLite file, spoken to over real HTTP on loopback."""

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.llm.test_serve import ROOT, free_port, stop_server


def serve(
    directory: Path, env_overrides: dict[str, str] | None = None
) -> tuple[str, subprocess.Popen[bytes]]:
    """Migrate a SQLite file in `directory` and start `manage.py serve` on a free port,
    its output going to `directory/server.log` (a pipe nobody reads would fill up and
    stall the server)."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "rhetor_site.settings",
        "DATABASE_URL": f"sqlite:///{directory / 'rhetor.sqlite3'}",
        "REDIS_URL": "",
        "HERMES_API_URL": "",
        "RHETOR_PROVIDERS": "simulated",
        "RHETOR_SIMULATED_DELAY": "0",
        "OLLAMA_BASE_URL": "http://127.0.0.1:9",
        **(env_overrides or {}),
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, check=True, cwd=ROOT)
    log = (directory / "server.log").open("ab")
    process = subprocess.Popen(
        [*manage, "serve", "--port", str(port), "--daphne-verbosity", "0"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return url, process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    pytest.fail(f"server did not start:\n{(directory / 'server.log').read_text()}")


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

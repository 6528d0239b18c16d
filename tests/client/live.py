"""Real Rhetor servers for tests: `manage.py serve` (daphne) in a subprocess."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.llm.test_serve import ROOT, free_port, stop_server

__all__ = ["serve", "stop_server"]


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

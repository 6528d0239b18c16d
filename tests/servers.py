"""Real Rhetor servers for tests: `manage.py serve` (daphne workers) in a subprocess.

    url, process = serve(tmp_path, {"RHETOR_WORKERS": "2", "REDIS_URL": redis_url})
    try: ...
    finally: stop_server(process)

The server runs the production settings (`rhetor_site.settings`) on a SQLite file in the
directory (or the given DATABASE_URL), with only the simulated provider unless the
overrides say otherwise. Its output goes to `<directory>/server.log`: a pipe nobody reads
would fill up and stall the server.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 90  # generous: a loaded CI machine starts workers slowly


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(
    directory: Path, env_overrides: dict[str, str] | None = None
) -> tuple[str, subprocess.Popen[bytes]]:
    """Migrate and start `manage.py serve` on a free port; return its URL and process."""
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
    log_path = directory / "server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [*manage, "serve", "--port", str(port), "--daphne-verbosity", "0"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return url, process
        except httpx.HTTPError:
            time.sleep(0.1)
    stop_server(process)
    pytest.fail(f"server did not start:\n{log_path.read_text()[-5000:]}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # the supervisor stops its workers and unregisters
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

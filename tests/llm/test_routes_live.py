"""An edited task route reaches every worker without a restart: two `manage.py serve`
processes on one SQLite file and one Redis, the routes replaced by `routes_import` in a
third process; both servers answer /message with the new route."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import ROOT, serve, stop_server

pytestmark = pytest.mark.integration

BODY = {"message": "Hello", "context_id": "ergon:routes", "task_type": "chat"}


@pytest.fixture
def two_servers(tmp_path: Path, redis_url: str) -> Iterator[tuple[list[str], dict[str, str]]]:
    env = {"REDIS_URL": redis_url, "RHETOR_ROUTES_RECHECK_SECONDS": "0.2"}
    first = serve(tmp_path, env)
    try:
        second = serve(tmp_path, env)
    except BaseException:
        stop_server(first[1])
        raise
    yield [first[0], second[0]], env
    stop_server(first[1])
    stop_server(second[1])


def answering_model(url: str) -> str:
    response = httpx.post(f"{url}/message", json=BODY, timeout=30)
    assert response.status_code == 200, response.text
    return str(response.json()["model"])


def test_a_route_imported_elsewhere_reaches_both_workers(
    two_servers: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    urls, env = two_servers
    assert [answering_model(u) for u in urls] == ["simulated-standard"] * 2
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"chat": {"provider": "simulated", "model": "simulated-fast"}}))

    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "routes_import", str(routes)],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "rhetor_site.settings",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'rhetor.sqlite3'}",
            "RHETOR_PROVIDERS": "simulated",
            **env,
        },
        cwd=ROOT,
        check=True,
        capture_output=True,
    )

    deadline = time.monotonic() + 10
    seen = [answering_model(u) for u in urls]
    while seen != ["simulated-fast"] * 2 and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = [answering_model(u) for u in urls]
    assert seen == ["simulated-fast"] * 2

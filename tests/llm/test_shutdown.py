"""A deploy is a SIGTERM: `manage.py serve` drains instead of dropping what is in flight.

Real processes: a fake OpenAI upstream streaming slowly, `serve` on SQLite (one worker),
ten streams in flight, then SIGTERM. Streams that end within the grace complete; those
that do not are cut as a client's disconnect would cut them. Either way every stream has
exactly one usage record, no hold is left, and every exchange is stored.
"""

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import ROOT, free_port, serve

STREAMS = 10
CHUNKS = 40


def start_upstream(delay: float) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.upstream",
            "--port",
            str(port),
            "--chunks",
            str(CHUNKS),
            "--delay",
            str(delay),
            "--reply",
            "word " * CHUNKS,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/v1/models", timeout=1)
            return url, process
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    pytest.fail("the fake upstream did not start")


@pytest.fixture
def slow_upstream(request: pytest.FixtureRequest) -> Iterator[str]:
    url, process = start_upstream(request.param)
    yield url
    process.terminate()
    process.wait(timeout=10)


async def one_stream(client: httpx.AsyncClient, n: int) -> list[dict[str, Any]]:
    body = {
        "message": f"Stream {n}",
        "context_id": f"deploy:{n}",
        "options": {"provider": "openai", "model": "gpt-4o"},
    }
    events: list[dict[str, Any]] = []
    try:
        async with client.stream("POST", "/stream", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[len("data: ") :]))
    except httpx.HTTPError:
        pass  # the connection was cut by the shutdown
    return events


async def streams_then_sigterm(url: str, server: subprocess.Popen[bytes]) -> list[Any]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        tasks = [asyncio.create_task(one_stream(client, n)) for n in range(STREAMS)]
        await asyncio.sleep(1.0)  # every stream is under way
        server.send_signal(signal.SIGTERM)
        return list(await asyncio.gather(*tasks))


def ledger(db: Path) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        records = conn.execute(
            "SELECT context_id, status, source, output_tokens, cost_nanos"
            " FROM budget_usagerecord ORDER BY context_id"
        ).fetchall()
        held = conn.execute(
            "SELECT count(*) FROM budget_budgetreservation WHERE state = 'held'"
        ).fetchone()[0]
        replies = conn.execute(
            "SELECT c.context_id, m.content, m.metadata FROM contexts_message m"
            " JOIN contexts_context c ON m.context_id = c.id WHERE m.role = 'assistant'"
        ).fetchall()
    return {"records": records, "held": held, "replies": replies}


def serve_openai(tmp_path: Path, upstream: str, grace: str) -> tuple[str, Any]:
    return serve(
        tmp_path,
        {
            "RHETOR_PROVIDERS": "openai",
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": f"{upstream}/v1",
            "RHETOR_SHUTDOWN_GRACE_SECONDS": grace,
        },
    )


@pytest.mark.parametrize("slow_upstream", [0.05], indirect=True)
def test_sigterm_lets_streams_in_flight_finish(slow_upstream: str, tmp_path: Path) -> None:
    url, server = serve_openai(tmp_path, slow_upstream, grace="30")

    results = asyncio.run(streams_then_sigterm(url, server))
    server.wait(timeout=60)

    assert server.returncode == 0
    for events in results:  # each stream ran to its end: text, then the done event
        assert events[-1]["done"] is True, events[-3:]
        assert "error" not in events[-1]
        assert "".join(e["chunk"] for e in events).split() == ["word"] * CHUNKS
    state = ledger(tmp_path / "rhetor.sqlite3")
    assert [(r[1], r[2]) for r in state["records"]] == [("ok", "provider")] * STREAMS
    assert state["held"] == 0
    assert len(state["replies"]) == STREAMS


@pytest.mark.parametrize("slow_upstream", [0.2], indirect=True)
def test_sigterm_after_the_grace_cuts_streams_and_charges_what_was_delivered(
    slow_upstream: str, tmp_path: Path
) -> None:
    url, server = serve_openai(tmp_path, slow_upstream, grace="1")

    results = asyncio.run(streams_then_sigterm(url, server))
    server.wait(timeout=60)

    assert server.returncode == 0
    delivered = {
        f"deploy:{n}": "".join(e["chunk"] for e in events) for n, events in enumerate(results)
    }
    assert all(0 < len(text.split()) < CHUNKS for text in delivered.values()), delivered
    state = ledger(tmp_path / "rhetor.sqlite3")
    # One record per stream, charged the prompt and what was generated until the cut.
    assert [r[0] for r in state["records"]] == sorted(delivered)
    for context, status, source, output_tokens, cost in state["records"]:
        assert (status, source) == ("cancelled", "partial"), context
        assert output_tokens >= len(delivered[context].split()) > 0
        assert cost > 0
    assert state["held"] == 0
    stored = {context: content for context, content, _ in state["replies"]}
    assert set(stored) == set(delivered)  # every partial reply is in its conversation
    assert all(json.loads(meta).get("partial") for _, _, meta in state["replies"])


@pytest.mark.django_db
def test_a_draining_worker_answers_health_with_503(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rhetor_site import lifecycle

    assert client.get("/health").status_code == 200
    monkeypatch.setattr(lifecycle, "_draining", True)

    response = client.get("/health")

    assert response.status_code == 503
    assert response.json()["reason"].startswith("draining")

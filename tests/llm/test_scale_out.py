"""Scale-out proof: `manage.py serve` with two daphne workers on one PostgreSQL and one
Redis, hammered over real HTTP by 64 concurrent clients against an enforced daily limit.

What must hold whichever worker served a request: a key's rate limit is shared by both
workers (through Redis); the charged total never exceeds the limit; every 200 has exactly
one settled usage record and its conversation stored once; every refusal is a clean 402
or 429 with nothing charged; nothing is left reserved; and both workers really served.
"""

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from budget.policies import nanos_from_usd
from tests.conftest import pg_conninfo
from tests.servers import ROOT, free_port, serve, stop_server

LIMIT_USD = "0.02"
CLIENTS = 64
RATE_LIMITED_CLIENTS = 40
RPM = 15
# ~300 output tokens per answer. gpt-4o's worst case (400 output tokens at 30_000 nano-USD)
# is $0.012, so $0.02 holds one at a time; the rest is steered to cheaper models until
# they, too, run out of budget.
REPLY = "word " * 300

pytestmark = pytest.mark.integration


@pytest.fixture
def upstream() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.upstream", "--port", str(port), "--reply", REPLY],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/v1/models", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(timeout=10)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def worker_pids(supervisor: int) -> list[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [int(pid) for pid in children]


async def one_request(client: httpx.AsyncClient, n: int) -> tuple[str, int, Any]:
    context = f"loadtest:{n}"
    body = {
        "message": f"Question number {n}",
        "context_id": context,
        "options": {"provider": "openai", "model": "gpt-4o", "max_tokens": 400},
    }
    if n % 2:
        response = await client.post("/message", json=body)
        return context, response.status_code, response.json()
    async with client.stream("POST", "/stream", json=body) as response:
        raw = await response.aread()
    if response.status_code != 200:
        return context, response.status_code, json.loads(raw)
    events = [json.loads(f[len("data: ") :]) for f in raw.decode().split("\n\n") if f.strip()]
    return context, response.status_code, events


async def hammer(url: str) -> list[tuple[str, int, Any]]:
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        return await asyncio.gather(*(one_request(client, n) for n in range(CLIENTS)))


async def hammer_with_key(url: str, key: str) -> list[tuple[str, int, Any, str | None]]:
    """Cheap requests (5 output tokens of gpt-3.5-turbo) under one rate-limited key."""

    async def one(client: httpx.AsyncClient, n: int) -> tuple[str, int, Any, str | None]:
        context = f"ratelimited:{n}"
        response = await client.post(
            "/message",
            json={
                "message": f"Quick one {n}",
                "context_id": context,
                "options": {"provider": "openai", "model": "gpt-3.5-turbo", "max_tokens": 5},
            },
        )
        return context, response.status_code, response.json(), response.headers.get("retry-after")

    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as client:
        return await asyncio.gather(*(one(client, n) for n in range(RATE_LIMITED_CLIENTS)))


def create_key(database_url: str) -> str:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "rhetor_site.settings",
        "DATABASE_URL": database_url,
        "REDIS_URL": "",
    }
    done = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "create_api_key",
            "--name",
            "loadtest",
            "--scopes",
            "messages",
            "--rpm",
            str(RPM),
            "--tpm",
            "0",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def test_two_workers_on_postgresql_and_redis_hold_the_budget_and_account_every_request(
    scratch_pg_database: str, redis_url: str, upstream: str, tmp_path: Path
) -> None:
    import psycopg

    url, server = serve(
        tmp_path,
        {
            "DATABASE_URL": scratch_pg_database,
            "REDIS_URL": redis_url,
            "RHETOR_WORKERS": "2",
            "RHETOR_PROVIDERS": "openai",
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": f"{upstream}/v1",
            "RHETOR_BUDGET_DAILY_LIMIT": "",
        },
    )
    try:
        key = create_key(scratch_pg_database)
        limited = asyncio.run(hammer_with_key(url, key))

        limit = httpx.post(
            f"{url}/budget/limit",
            json={"period": "daily", "limit_amount": LIMIT_USD, "enforcement": "enforce"},
        )
        assert limit.status_code == 200, limit.text
        workers = worker_pids(server.pid)
        assert len(workers) == 2
        before = {pid: cpu_ticks(pid) for pid in workers}

        results = asyncio.run(hammer(url))

        busy = {pid: cpu_ticks(pid) - before[pid] for pid in workers}
    finally:
        stop_server(server)

    # One key's requests per minute are counted across both workers: exactly RPM admitted.
    admitted = [r for r in limited if r[1] == 200]
    throttled = [r for r in limited if r[1] == 429]
    others = [r[1:3] for r in limited if r[1] not in (200, 429)]
    assert len(admitted) == RPM, others
    assert len(throttled) == RATE_LIMITED_CLIENTS - RPM, others
    assert all(r[2]["code"] == "rate_limited" and int(r[3]) > 0 for r in throttled)

    served = [r for r in results if r[1] == 200]
    refused = [r for r in results if r[1] == 402]
    assert len(served) + len(refused) == CLIENTS, [r for r in results if r[1] not in (200, 402)]
    assert served
    assert refused
    assert all(r[2]["code"] == "budget_exceeded" for r in refused)
    models = {a["model"] if isinstance(a, dict) else a[-1]["model"] for _, _, a in served}
    assert "gpt-4o" in models
    assert len(models) > 1
    steered = [a for _, _, a in served if isinstance(a, dict) and a["model"] != "gpt-4o"]
    assert all(any("cheaper" in w for w in a["budget_warnings"]) for a in steered)
    for context, _, answer in served:
        if isinstance(answer, list):  # a stream: text, then a separate done event
            assert answer[-1]["done"] is True, (context, answer)
            assert not answer[-1].get("error"), (context, answer)
    # Both workers took part (each burnt CPU serving), not one of them alone.
    assert all(ticks > 5 for ticks in busy.values()), busy

    with psycopg.connect(pg_conninfo(scratch_pg_database)) as db:
        ledger = db.execute(
            "SELECT coalesce(sum(cost_nanos), 0) FROM budget_usagerecord"
        ).fetchone()[0]
        spent, reserved = db.execute(
            "SELECT spent_nanos, reserved_nanos FROM budget_spendcounter"
            " WHERE period = 'daily' AND scope_kind = 'all'"
        ).fetchone()
        held = db.execute(
            "SELECT count(*) FROM budget_budgetreservation WHERE state = 'held'"
        ).fetchone()[0]
        ok_records = dict(
            db.execute(
                "SELECT context_id, count(*) FROM budget_usagerecord WHERE status = 'ok'"
                " GROUP BY context_id"
            ).fetchall()
        )
        failed_records = db.execute(
            "SELECT count(*) FROM budget_usagerecord WHERE status <> 'ok'"
        ).fetchone()[0]
        stored = dict(
            db.execute(
                "SELECT c.context_id, count(m.id) FROM contexts_context c"
                " JOIN contexts_message m ON m.context_id = c.id GROUP BY c.context_id"
            ).fetchall()
        )

    assert ledger == spent <= nanos_from_usd(LIMIT_USD)
    assert reserved == 0
    assert held == 0
    assert failed_records == 0
    answered = [r[0] for r in served] + [r[0] for r in admitted]
    assert ok_records == dict.fromkeys(answered, 1)
    assert stored == dict.fromkeys(answered, 2)  # the question and the answer

"""What a dead primary upstream costs each request, with and without the circuit breaker.

    .venv/bin/python bench/circuit_breaker.py [--requests 20] [--connect-timeout 1.0]

The chat route's primary (Anthropic) points at a blackhole (connections never complete,
so every attempt waits RHETOR_CONNECT_TIMEOUT), its fallback (OpenAI) at the local fake
upstream. Sequential POST /message requests go through Django's ASGI handler in process,
on a scratch SQLite database; the run is repeated with the breaker effectively off
(threshold 10^9) and on (threshold 3). Prints latencies; asserts nothing.
"""

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


async def _run(requests: int, threshold: int) -> tuple[list[float], int]:
    import httpx
    from django.conf import settings
    from django.core.handlers.asgi import ASGIHandler

    from llm.circuit import breakers

    settings.RHETOR_CIRCUIT_FAILURE_THRESHOLD = threshold
    transport = httpx.ASGITransport(app=ASGIHandler())
    latencies = []
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        # Warm up (tokenizer, SDK clients) on the fallback only; not measured.
        warm = {"message": "Hi", "task_type": "chat", "options": {"provider": "openai"}}
        await client.post("/message", json=warm)
        breakers.reset()
        for _ in range(requests):
            started = time.perf_counter()
            response = await client.post("/message", json={"message": "Hi", "task_type": "chat"})
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200 or response.json()["provider"] != "openai":
                raise SystemExit(f"unexpected answer: {response.status_code} {response.text}")
    tried = next((s.total_failures for s in breakers.states() if s.provider == "anthropic"), 0)
    return latencies, tried


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--connect-timeout", type=float, default=1.0)
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    scratch = tempfile.mkdtemp(prefix="rhetor-bench-")
    os.environ["DATABASE_URL"] = f"sqlite:///{scratch}/bench.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from llm.providers import reset_providers
    from tests.fakes.upstream import Blackhole, FakeUpstream

    call_command("migrate", verbosity=0, skip_checks=True)
    with FakeUpstream() as upstream, Blackhole() as hole:
        upstream.reply("Fallback answer", input_tokens=5, output_tokens=2)
        settings.RHETOR_PROVIDERS = ["anthropic", "openai", "simulated"]
        settings.ANTHROPIC_API_KEY = settings.OPENAI_API_KEY = "bench-key"
        settings.ANTHROPIC_BASE_URL = hole.url
        settings.OPENAI_BASE_URL = f"{upstream.url}/v1"
        settings.RHETOR_CONNECT_TIMEOUT = args.connect_timeout
        settings.RHETOR_CIRCUIT_COOLDOWN = 3600.0
        rows = []
        for label, threshold in (("breaker off", 10**9), ("breaker on (threshold 3)", 3)):
            asyncio.run(reset_providers())
            latencies, tried = asyncio.run(_run(args.requests, threshold))
            rows.append((label, latencies, tried))
        asyncio.run(reset_providers())

    print(
        f"{args.requests} sequential /message requests, primary blackholed "
        f"(connect timeout {args.connect_timeout:.1f} s), answered by the fallback"
    )
    print(
        f"{'':26} {'p50 ms':>8} {'mean ms':>8} {'max ms':>8} {'total s':>8} {'primary tried':>14}"
    )
    for label, latencies, tried in rows:
        ms = [x * 1000 for x in latencies]
        print(
            f"{label:26} {statistics.median(ms):8.1f} {statistics.fmean(ms):8.1f} "
            f"{max(ms):8.1f} {sum(latencies):8.2f} {tried:14d}"
        )


if __name__ == "__main__":
    main()

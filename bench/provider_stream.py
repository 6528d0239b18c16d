"""What the OpenAI adapter costs per call: CPU time of `OpenAIProvider.stream()` (and of
`complete()`) against the fake upstream, in-process, one call after another.

    .venv/bin/python bench/provider_stream.py [--calls 2000] [--warmup 200]
    .venv/bin/python bench/provider_stream.py --provider anthropic    # the same for Claude

The fake upstream (`python -m tests.fakes.upstream`) runs in its own process, so
`time.process_time()` here counts only the adapter's side: building the request, the SDK
and HTTP client, reading the SSE frames and turning them into events. Its reply echoes
the user message one word per delta, so a 7-word message is an 8-chunk answer and a
49-word one a 50-chunk stream (the same shapes as bench/gateway.py). calls/s is wall
clock, one call at a time on one connection (the upstream's latency included).
"""

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SHORT = "one two three four five six seven"  # an 8-chunk answer
LONG = " ".join(["word"] * 49)  # a 50-chunk answer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_upstream() -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "tests.fakes.upstream", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    return url, process
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="measured calls per case")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured calls first")
    parser.add_argument("--provider", choices=["openai", "anthropic"], default="openai")
    args = parser.parse_args()

    url, upstream = start_upstream()
    try:
        run(url, provider_id=args.provider, calls=args.calls, warmup=args.warmup)
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)


def run(url: str, *, provider_id: str, calls: int, warmup: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.conf import settings

    from llm.providers.anthropic import AnthropicProvider
    from llm.providers.base import ChatMessage, CompletionRequest, Provider, StreamEnd
    from llm.providers.openai import OpenAIProvider

    settings.RHETOR_PROVIDERS = [provider_id]
    provider: Provider
    if provider_id == "anthropic":
        settings.ANTHROPIC_API_KEY = "bench-key"
        settings.ANTHROPIC_BASE_URL = url
        provider, model = AnthropicProvider(), "claude-3-haiku-20240307"
    else:
        settings.OPENAI_API_KEY = "bench-key"
        settings.OPENAI_BASE_URL = f"{url}/v1"
        provider, model = OpenAIProvider(), "gpt-4o"

    def request(text: str) -> CompletionRequest:
        return CompletionRequest(model=model, messages=(ChatMessage("user", text),), max_tokens=100)

    async def stream_once(req: CompletionRequest) -> int:
        events = 0
        async for event in provider.stream(req):
            events += 1
            last = event
        assert isinstance(last, StreamEnd)
        return events

    async def complete_once(req: CompletionRequest) -> int:
        completion = await provider.complete(req)
        assert completion.text
        return 1

    cases: list[tuple[str, Callable[[], Awaitable[int]]]] = [
        ("stream, 8 chunks", lambda: stream_once(request(SHORT))),
        ("stream, 50 chunks", lambda: stream_once(request(LONG))),
        ("complete (JSON)", lambda: complete_once(request(SHORT))),
    ]

    async def measure() -> list[tuple[str, float, float, int]]:
        rows = []
        for name, call in cases:
            for _ in range(warmup):
                await call()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            events = 0
            for _ in range(calls):
                events = await call()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            rows.append((name, cpu / calls * 1e3, calls / wall, events))
        await provider.aclose()
        return rows

    rows = asyncio.run(measure())
    print(f"{type(provider).__name__} against the fake upstream, {calls} calls per case")
    print(f"{'case':<20} {'events':>6} {'CPU ms/call':>12} {'calls/s':>9}")
    for name, cpu_ms, rate, events in rows:
        print(f"{name:<20} {events:>6} {cpu_ms:>12.3f} {rate:>9.0f}")


if __name__ == "__main__":
    main()

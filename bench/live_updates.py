"""How fast a conversation reaches its subscribers, on the same worker and across workers.

    .venv/bin/python bench/live_updates.py                   # 200 requests, Redis db 10
    .venv/bin/python bench/live_updates.py --requests 50 --redis redis://127.0.0.1:6379/11

Starts two `manage.py serve` processes (one worker each) on one Redis and one SQLite
file in a temporary directory (simulated provider, no delay). Two WebSocket clients
subscribe to one context, one on each worker. Then, one request at a time, `POST /message`
goes to worker A and the clock runs until each subscriber has the assistant's message.
Prints the median, p95 and max of: the request itself, the extra time until the
subscriber on worker A has the reply (same process, channel layer through Redis), and
until the subscriber on worker B has it (another process). Loopback only; it asserts
nothing.
"""

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(directory: Path, redis_url: str) -> tuple[str, subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "rhetor_site.settings",
        "DATABASE_URL": f"sqlite:///{directory / 'rhetor.sqlite3'}",
        "REDIS_URL": redis_url,
        "HERMES_API_URL": "",
        "RHETOR_PROVIDERS": "simulated",
        "RHETOR_SIMULATED_DELAY": "0",
        "OLLAMA_BASE_URL": "http://127.0.0.1:9",
        "RHETOR_LOG_LEVEL": "warning",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    migrate = [*manage, "migrate", "--noinput", "-v", "0"]
    subprocess.run(migrate, env=env, check=True, cwd=ROOT)  # noqa: S603 - our own manage.py
    port = free_port()
    log = (directory / f"server-{port}.log").open("ab")
    process = subprocess.Popen(  # noqa: S603 - our own manage.py
        [*manage, "serve", "--port", str(port), "--daphne-verbosity", "0"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return url, process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"server did not start; see {directory}")


async def subscriber(url: str, context: str) -> websockets.ClientConnection:
    ws = await websockets.connect(url.replace("http", "ws") + "/ws")
    await ws.send(json.dumps({"type": "SUBSCRIBE", "payload": {"context": context}}))
    ack = json.loads(await ws.recv())
    if ack["payload"].get("status") != "subscribed":
        raise SystemExit(f"subscription refused: {ack}")
    return ws


async def reply_seen(ws: websockets.ClientConnection, text: str) -> float:
    """The moment the subscriber has the assistant's message `text`."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        payload = frame["payload"]
        if payload.get("role") == "assistant" and payload.get("content") == text:
            return time.perf_counter()


def summary(name: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"| {name} | {statistics.median(ms):.2f} | {p95:.2f} | {ms[-1]:.2f} |"


async def measure(url_a: str, url_b: str, requests: int) -> None:
    context = f"bench:live-{time.monotonic_ns()}"
    same = await subscriber(url_a, context)
    other = await subscriber(url_b, context)
    request_times, same_delays, other_delays = [], [], []
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(requests + 5):
            started = time.perf_counter()
            response = await http.post(
                f"{url_a}/message", json={"message": f"ping {i}", "context_id": context}
            )
            answered = time.perf_counter()
            text = response.json()["message"]
            seen_same, seen_other = await asyncio.gather(
                reply_seen(same, text), reply_seen(other, text)
            )
            if i >= 5:  # warm-up excluded
                request_times.append(answered - started)
                same_delays.append(seen_same - started)
                other_delays.append(seen_other - started)
    await same.close()
    await other.close()
    print(f"{requests} sequential POST /message to worker A; subscribers on A and B (ms)")
    print("| measure | median | p95 | max |")
    print("|---|---|---|---|")
    print(summary("request (POST /message answered)", request_times))
    print(summary("reply at the subscriber on worker A", same_delays))
    print(summary("reply at the subscriber on worker B", other_delays))
    print("(subscriber times run from the start of the request)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--redis", default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/10"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rhetor-live-bench-") as tmp:
        directory = Path(tmp)
        url_a, process_a = start(directory, args.redis)
        url_b, process_b = start(directory, args.redis)
        try:
            asyncio.run(measure(url_a, url_b, args.requests))
        finally:
            for process in (process_a, process_b):
                process.terminate()
                process.wait(timeout=15)


if __name__ == "__main__":
    main()

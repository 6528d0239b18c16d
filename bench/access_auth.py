"""What authentication and the per-key rate limit cost per request.

    .venv/bin/python bench/access_auth.py [--requests 5000] [--redis redis://127.0.0.1:6379/14]

Prints, per call: the key lookup on a cold cache (one indexed query, SQLite scratch file),
on a warm cache (no query: a dict lookup and a SHA-256 comparison), the in-memory rate
limiter, and the Redis rate limiter (one Lua round trip) when --redis is given; then the
whole GET /budget through Django with a key against the same request anonymous.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _timed(label: str, n: int, call: Callable[[], object]) -> None:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    samples.sort()
    p50 = statistics.median(samples) * 1e6
    p99 = samples[int(len(samples) * 0.99) - 1] * 1e6
    sys.stdout.write(f"{label:<44} p50 {p50:9.1f} us   p99 {p99:9.1f} us   (n={n})\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--redis", default="")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp()
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp}/bench.sqlite3"
    os.environ["REDIS_URL"] = ""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client, override_settings

    from access.auth import principal_for_token
    from access.keycache import forget_key
    from access.ratelimit import LocalRateLimiter, RedisRateLimiter
    from access.services import api_key_create

    call_command("migrate", verbosity=0, skip_checks=True)
    created = api_key_create(name="bench", scopes="all", requests_per_minute=0)
    token = created.token
    n = args.requests

    def cold() -> None:
        forget_key(created.key.key_id)
        principal_for_token(token)

    _timed("key lookup, cold cache (1 query)", n, cold)
    _timed("key lookup, warm cache (0 queries)", n, lambda: principal_for_token(token))

    local = LocalRateLimiter()
    _timed(
        "rate limit, in memory",
        n,
        lambda: local.hit(subject="bench", rpm=10**9, tpm=10**12, tokens=10),
    )
    if args.redis:
        redis_limiter = RedisRateLimiter(args.redis, prefix=f"rhetor:bench:{uuid.uuid4().hex}")
        _timed(
            "rate limit, Redis (1 Lua round trip)",
            n,
            lambda: redis_limiter.hit(subject="bench", rpm=10**9, tpm=10**12, tokens=10),
        )
        for key in redis_limiter.client.scan_iter(f"{redis_limiter.prefix}:*"):
            redis_limiter.client.delete(key)

    client = Client()
    override_settings(ALLOWED_HOSTS=["testserver"]).enable()
    with override_settings(RHETOR_HOST="127.0.0.1", RHETOR_REQUIRE_AUTH=None):
        _timed("GET /budget anonymous (loopback)", n // 5, lambda: client.get("/budget"))
    with override_settings(RHETOR_HOST="0.0.0.0", RHETOR_REQUIRE_AUTH=None):  # noqa: S104
        _timed(
            "GET /budget with a key (warm cache)",
            n // 5,
            lambda: client.get("/budget", HTTP_X_API_KEY=token),
        )


if __name__ == "__main__":
    main()

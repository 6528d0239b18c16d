"""What reserve-and-settle costs per request, on SQLite and on PostgreSQL.

    .venv/bin/python bench/budget_reserve.py [--requests 500] [--threads 8]
        [--pg postgres://postgres@127.0.0.1:5432/test]

Each backend runs in a child process with its own scratch database (a temporary SQLite
file; a throw-away PostgreSQL database, dropped afterwards), migrated from scratch. The
setup mirrors a real request: three enforce limits (daily all, monthly provider, weekly
component) and one warn limit, so each reserve places four holds and each settle charges
nine counters.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _child(requests: int, threads: int) -> None:
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, connections

    from budget import services
    from llm.providers.base import Usage

    call_command("migrate", verbosity=0, skip_checks=True)
    for period, kind, value, policy in (
        ("daily", "all", "", "enforce"),
        ("monthly", "provider", "anthropic", "enforce"),
        ("weekly", "component", "ergon", "enforce"),
        ("monthly", "all", "", "warn"),
    ):
        services.budget_limit_set(
            period=period,
            limit_nanos=10**15,
            scope_kind=kind,
            scope_value=value,
            enforcement=policy,
        )

    def one() -> tuple[float, float]:
        t0 = time.perf_counter()
        r = services.budget_reserve(
            request_id=uuid.uuid4(),
            attempt=1,
            provider="anthropic",
            model="claude-3-haiku-20240307",
            component="ergon",
            task_type="chat",
            context_id="ergon:bench",
            input_tokens=1000,
            max_tokens=1000,
        )
        t1 = time.perf_counter()
        services.budget_settle(
            reservation_id=r.reservation_id, usage=Usage(1000, 400), status="ok", latency_ms=1
        )
        return t1 - t0, time.perf_counter() - t1

    for _ in range(20):  # warm-up: connections, counter ids, statement caches
        one()
    reserve_t: list[float] = []
    settle_t: list[float] = []
    for _ in range(requests):
        a, b = one()
        reserve_t.append(a)
        settle_t.append(b)
    both = sorted(a + b for a, b in zip(reserve_t, settle_t, strict=True))

    def ms(x: float) -> str:
        return f"{x * 1000:.2f} ms"

    vendor = connection.vendor
    print(
        f"{vendor:10} sequential, {requests} requests: reserve {ms(statistics.mean(reserve_t))}"
        f" + settle {ms(statistics.mean(settle_t))} = {ms(statistics.mean(both))} mean,"
        f" p50 {ms(both[len(both) // 2])}, p99 {ms(both[int(len(both) * 0.99) - 1])}"
    )

    per_thread = max(1, requests // threads)
    barrier = threading.Barrier(threads)
    errors: list[str] = []

    def worker() -> None:
        try:
            barrier.wait()
            for _ in range(per_thread):
                one()
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            connections.close_all()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    total = per_thread * threads
    print(
        f"{vendor:10} {threads} threads, {total} requests: {total / elapsed:.0f} reserve+settle"
        f" per second, {ms(elapsed / total)} per request wall-clock"
        + (f", {len(errors)} errors: {errors[:2]}" if errors else "")
    )


def _run(url: str, requests: int, threads: int) -> None:
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    for name in ("DAILY", "WEEKLY", "MONTHLY"):
        env[f"RHETOR_BUDGET_{name}_LIMIT"] = ""
    subprocess.run(  # noqa: S603 - our own interpreter and script
        [
            sys.executable,
            __file__,
            "--child",
            "--requests",
            str(requests),
            "--threads",
            str(threads),
        ],
        env=env,
        cwd=REPO,
        check=False,
    )


def _conninfo(url: str) -> str:
    from urllib.parse import urlparse

    u = urlparse(url)
    return (
        f"host={u.hostname or '127.0.0.1'} port={u.port or 5432} user={u.username or 'postgres'}"
        f" dbname={(u.path or '/postgres').lstrip('/') or 'postgres'}"
        + (f" password={u.password}" if u.password else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432/test")
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        _child(args.requests, args.threads)
        return

    with tempfile.TemporaryDirectory() as tmp:
        _run(f"sqlite:///{tmp}/bench.sqlite3", args.requests, args.threads)

    try:
        import psycopg

        admin = psycopg.connect(_conninfo(args.pg), autocommit=True, connect_timeout=2)
    except Exception as exc:
        print(f"postgresql skipped: {exc}")
        return
    scratch = "rhetor_budget_bench"
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{scratch}"')
        try:
            _run(f"{args.pg.rsplit('/', 1)[0]}/{scratch}", args.requests, args.threads)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


if __name__ == "__main__":
    main()

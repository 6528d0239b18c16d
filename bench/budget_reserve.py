"""What reserve-and-settle costs per request, on SQLite and on PostgreSQL.

    .venv/bin/python bench/budget_reserve.py [--requests 500] [--threads 8]
        [--pg postgres://postgres@127.0.0.1:5432/test] [--setup gateway|four|both]
    BENCH_SHOW_SQL=1 .venv/bin/python bench/budget_reserve.py ...   # and list the statements

Each backend runs in a child process with its own scratch database (a temporary SQLite
file; a throw-away PostgreSQL database, dropped afterwards), migrated from scratch. Two
setups:

- gateway: what bench/gateway.py runs (RHETOR_BUDGET_POLICY=enforce,
  RHETOR_BUDGET_DAILY_LIMIT=1000000, no limit rows, no component): one hold per reserve,
  six counters charged per settle.
- four: three enforce limits (daily all, monthly provider, weekly component) and one warn
  limit, so each reserve places four holds and each settle charges nine counters.

For each it prints the SQL statements of one reserve+settle (CaptureQueriesContext, after
warm-up), the mean time of each and the CPU time of the pair, then a threaded run.
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


def _child(requests: int, threads: int, setup: str) -> None:
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection, connections
    from django.test.utils import CaptureQueriesContext

    from budget import services
    from llm.providers.base import Usage

    # tests.settings re-checks shared versions on every lookup; a server does once a second.
    settings.RHETOR_BUDGET_RECHECK_SECONDS = 1.0
    call_command("migrate", verbosity=0, skip_checks=True)
    component = ""
    if setup == "four":
        component = "ergon"
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
            component=component,
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
    with CaptureQueriesContext(connection) as captured:
        one()
    statements = len(captured.captured_queries)
    if os.environ.get("BENCH_SHOW_SQL"):
        for query in captured.captured_queries:
            print("   ", query["sql"][:160])
    reserve_t: list[float] = []
    settle_t: list[float] = []
    cpu0 = time.process_time()
    for _ in range(requests):
        a, b = one()
        reserve_t.append(a)
        settle_t.append(b)
    cpu = (time.process_time() - cpu0) / requests
    both = sorted(a + b for a, b in zip(reserve_t, settle_t, strict=True))

    def us(x: float) -> str:
        return f"{x * 1e6:.0f} us"

    label = f"{connection.vendor:10} {setup:7}"
    print(
        f"{label} {statements} statements per reserve+settle; sequential, {requests} requests:"
        f" reserve {us(statistics.mean(reserve_t))} + settle {us(statistics.mean(settle_t))}"
        f" = {us(statistics.mean(both))} mean, p50 {us(both[len(both) // 2])},"
        f" p99 {us(both[int(len(both) * 0.99) - 1])}; CPU {us(cpu)} per pair (this process)"
    )
    if threads <= 1:
        return

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
        f"{label} {threads} threads, {total} requests: {total / elapsed:.0f} reserve+settle"
        f" per second, {us(elapsed / total)} per request wall-clock"
        + (f", {len(errors)} errors: {errors[:2]}" if errors else "")
    )


def _run(url: str, requests: int, threads: int, setup: str) -> None:
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    for name in ("DAILY", "WEEKLY", "MONTHLY"):
        env[f"RHETOR_BUDGET_{name}_LIMIT"] = ""
    env["RHETOR_BUDGET_POLICY"] = "warn"
    if setup == "gateway":
        env["RHETOR_BUDGET_POLICY"] = "enforce"
        env["RHETOR_BUDGET_DAILY_LIMIT"] = "1000000"
    subprocess.run(  # noqa: S603 - our own interpreter and script
        [
            sys.executable,
            __file__,
            "--child",
            "--requests",
            str(requests),
            "--threads",
            str(threads),
            "--setup",
            setup,
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
    parser.add_argument("--setup", choices=("gateway", "four", "both"), default="both")
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        _child(args.requests, args.threads, args.setup)
        return
    setups = ("gateway", "four") if args.setup == "both" else (args.setup,)

    for setup in setups:
        with tempfile.TemporaryDirectory() as tmp:
            _run(f"sqlite:///{tmp}/bench.sqlite3", args.requests, args.threads, setup)

    try:
        import psycopg

        admin = psycopg.connect(_conninfo(args.pg), autocommit=True, connect_timeout=2)
    except Exception as exc:
        print(f"postgresql skipped: {exc}")
        return
    scratch = "rhetor_budget_bench"
    with admin:
        try:
            for setup in setups:
                admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
                admin.execute(f'CREATE DATABASE "{scratch}"')
                url = f"{args.pg.rsplit('/', 1)[0]}/{scratch}"
                _run(url, args.requests, args.threads, setup)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


if __name__ == "__main__":
    main()

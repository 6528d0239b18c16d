"""What the task-route lookup costs a request: the worker's cached table between checks
(the steady state), a version check against the cache, and a full reload from the database.

    .venv/bin/python bench/route_lookup.py [--lookups 100000] [--routes 200]

Runs on a temporary SQLite file with the locmem cache (a Redis cache adds one round trip
to the version check, once per RHETOR_ROUTES_RECHECK_SECONDS per worker).
"""

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookups", type=int, default=100_000)
    parser.add_argument("--routes", type=int, default=200, help="extra component routes")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="rhetor-bench-routes-")
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp}/bench.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    from llm.route_table import RouteTableCache, aroute_table, route_table, task_routes_seed
    from llm.services import task_route_create

    call_command("migrate", verbosity=0, skip_checks=True)
    task_routes_seed()
    for i in range(args.routes):
        task_route_create(name=f"component{i}_code", provider="openai", model="gpt-4o")
    route_table()
    n = args.lookups

    async def steady() -> float:
        start = time.perf_counter()
        for _ in range(n):
            (await aroute_table()).lookup(component="ergon", task_type="code")
        return time.perf_counter() - start

    from django.conf import settings

    settings.RHETOR_ROUTES_RECHECK_SECONDS = 3600
    reset_queries()
    with CaptureQueriesContext(connection) as queries:
        elapsed = asyncio.run(steady())
    print(
        f"steady state (between checks): {elapsed / n * 1e6:.2f} us per lookup, "
        f"{len(queries)} queries in {n} lookups"
    )

    checking = RouteTableCache(recheck_seconds=0)
    checking.get()
    start = time.perf_counter()
    for _ in range(n // 10):
        checking.get()
    per_check = (time.perf_counter() - start) / (n // 10) * 1e6
    print(f"version check every lookup (locmem): {per_check:.2f} us")

    loads = 200
    start = time.perf_counter()
    for _ in range(loads):
        checking.invalidate()
        checking.get()
    per_load = (time.perf_counter() - start) / loads * 1e3
    print(f"full reload of {5 + 1 + args.routes} routes from the database: {per_load:.2f} ms")


if __name__ == "__main__":
    main()

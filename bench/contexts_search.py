"""Search and list latency of the context API on 100,000 messages and 10,000 contexts.

    .venv/bin/python bench/contexts_search.py                # a fresh SQLite file in /tmp
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_contexts \\
        .venv/bin/python bench/contexts_search.py            # PostgreSQL (database is reset)

Builds one context of 100,000 messages (random words from a 5,000-word vocabulary) plus
9,999 small contexts, then times POST /contexts/{id}/search, GET /contexts (first and a
deep page) and GET /contexts/{id} through Django's test client (URL routing, ninja and
serialisation included). Prints the median and p95 of each.
"""

import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BIG_MESSAGES = 100_000
CONTEXTS = 10_000
RUNS = 30


def _setup() -> None:
    if "DATABASE_URL" not in os.environ:
        path = Path(tempfile.gettempdir()) / "rhetor_bench_contexts.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rhetor_site.settings")
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,localhost")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    call_command("migrate", verbosity=0)


def _populate() -> str:
    from django.db import transaction
    from django.utils import timezone

    from contexts.models import Context, Message

    rng = random.Random(42)
    vocabulary = [f"w{i}" for i in range(5000)] + ["postgresql", "redis", "deadline", "budget"]
    now = timezone.now()
    big = Context.objects.create(
        context_id="bench:big", component="bench", message_count=BIG_MESSAGES
    )
    started = time.perf_counter()
    batch = 5000
    for start in range(0, BIG_MESSAGES, batch):
        rows = [
            Message(
                context=big,
                seq=seq,
                role="user" if seq % 2 == 0 else "assistant",
                content=" ".join(rng.choices(vocabulary, k=rng.randint(8, 40))),
                tokens=30,
                created_at=now,
            )
            for seq in range(start, min(start + batch, BIG_MESSAGES))
        ]
        with transaction.atomic():
            Message.objects.bulk_create(rows)
    contexts = [
        Context(
            context_id=f"ergon:ctx{i}/slash {i}",
            component=rng.choice(["ergon", "telos", "athena", "hermes"]),
            message_count=0,
            token_count=rng.randint(0, 5000),
            metadata={"component": "ergon"},
        )
        for i in range(CONTEXTS - 1)
    ]
    with transaction.atomic():
        Context.objects.bulk_create(contexts, batch_size=2000)
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # what autovacuum does after a bulk load
    print(
        f"populated {BIG_MESSAGES:,} messages and {CONTEXTS:,} contexts "
        f"in {time.perf_counter() - started:.1f}s"
    )
    return big.context_id


def _time(label: str, call: "object") -> None:
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        response = call()  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.content
    samples.sort()
    p95 = samples[int(len(samples) * 0.95) - 1]
    print(f"{label:<52} median {statistics.median(samples):7.2f} ms   p95 {p95:7.2f} ms")


def main() -> None:
    _setup()
    from urllib.parse import quote

    from django.db import connection
    from django.test import Client

    big = _populate()
    client = Client()
    url = f"/contexts/{quote(big, safe='')}"
    print(f"database: {connection.vendor}")
    queries = ["postgresql deadline", "w17", "w1 w2 w3 w4", "budget redis w4999"]
    for query in queries:
        _time(
            f"search {query!r} (limit 5)",
            lambda q=query: client.post(f"{url}/search?query={quote(q)}&limit=5"),
        )
    _time("search 'w42' (limit 100)", lambda: client.post(f"{url}/search?query=w42&limit=100"))
    _time("GET /contexts?limit=50", lambda: client.get("/contexts?limit=50"))
    deep = "/contexts?limit=50&offset=9900"
    _time(f"GET {deep}", lambda: client.get(deep))
    _time("GET /contexts?component=telos&limit=50", lambda: client.get("/contexts?component=telos"))
    _time("GET /contexts/{big}?limit=20", lambda: client.get(f"{url}?limit=20"))


if __name__ == "__main__":
    main()

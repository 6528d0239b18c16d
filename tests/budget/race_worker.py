"""One server process of the multi-process enforcement proof (test_race.py).

Run as `python -m tests.budget.race_worker --threads N --start-at T` with DATABASE_URL set:
waits until wall-clock time T, fires N threads at budget_reserve/budget_settle through one
barrier, and prints a JSON line {"served": n, "refused": n, "errors": [...]}.
"""

import argparse
import json
import os
import sys
import threading
import time
import uuid


def fire(
    n: int, *, output_tokens: int, start_at: float | None = None
) -> tuple[int, int, list[str]]:
    """Release `n` threads through one barrier at budget_reserve (haiku, 1000 + 1000
    tokens), settling each served one at `output_tokens`; (served, refused, errors)."""
    from django.db import connections

    from budget import services
    from budget.errors import BudgetExceeded
    from llm.providers.base import Usage

    barrier = threading.Barrier(n)
    served: list[int] = []
    refused: list[int] = []
    errors: list[str] = []

    def one() -> None:
        try:
            barrier.wait()
            try:
                r = services.budget_reserve(
                    request_id=uuid.uuid4(),
                    attempt=1,
                    provider="anthropic",
                    model="claude-3-haiku",
                    component="ergon",
                    task_type="chat",
                    context_id="ergon:race",
                    input_tokens=1000,
                    max_tokens=1000,
                )
            except BudgetExceeded:
                refused.append(1)
                return
            services.budget_settle(
                reservation_id=r.reservation_id,
                usage=Usage(1000, output_tokens),
                status="ok",
                latency_ms=1,
            )
            served.append(1)
        except Exception as exc:  # reported to the test, which fails on any
            errors.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one) for _ in range(n)]
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(served), len(refused), errors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--start-at", type=float, required=True)
    parser.add_argument("--output-tokens", type=int, default=1000)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    served, refused, errors = fire(
        args.threads, output_tokens=args.output_tokens, start_at=args.start_at
    )
    sys.stdout.write(json.dumps({"served": served, "refused": refused, "errors": errors}) + "\n")


if __name__ == "__main__":
    main()

"""The enforcement proof: many concurrent requests against a limit that affords about ten.

On SQLite (default suite) 64 threads in this process; on PostgreSQL (integration tier)
two separate OS processes of 32 threads each against one database.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db.models import Sum

from budget.models import BudgetReservation, SpendCounter, UsageRecord
from budget.policies import nanos_from_usd
from tests.budget.race_worker import fire
from tests.conftest import pg_conninfo

REPO = Path(__file__).resolve().parents[2]
PER_REQUEST = 1000 * 250 + 1000 * 1250  # haiku, 1000 in + 1000 out: 1_500_000 nanos
LIMIT = "0.0155"  # affords 10 worst cases (15_000_000 of 15_500_000)


def _assert_books_balance(*, served: int, limit_nanos: int) -> None:
    counter = SpendCounter.objects.get(period="daily", scope_kind="all")
    ledger = UsageRecord.objects.aggregate(total=Sum("cost_nanos"))["total"] or 0
    settled = BudgetReservation.objects.filter(state="settled")
    assert counter.spent_nanos == ledger <= limit_nanos
    assert counter.reserved_nanos == 0
    assert UsageRecord.objects.filter(status="ok").count() == served == settled.count()
    assert BudgetReservation.objects.filter(state="held").exists() is False
    # Every counter the requests touched agrees with the ledger.
    for scope in SpendCounter.objects.all():
        assert (scope.spent_nanos, scope.reserved_nanos) == (ledger, 0)


@pytest.mark.django_db(transaction=True)
def test_64_concurrent_requests_never_overspend_on_sqlite(file_sqlite_db, set_limit):
    set_limit("daily", LIMIT, "enforce")
    set_limit("monthly", "1", "enforce", scope="provider:anthropic")

    served, refused, errors = fire(64, output_tokens=1000)

    assert errors == []
    assert (served, refused) == (10, 54)
    _assert_books_balance(served=served, limit_nanos=nanos_from_usd(LIMIT))
    # Settled at the worst case, the ledger equals the sum of the settled reservations.
    reserved = BudgetReservation.objects.aggregate(total=Sum("reserved_nanos"))["total"]
    assert reserved == 10 * PER_REQUEST == UsageRecord.objects.aggregate(t=Sum("cost_nanos"))["t"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_settling_below_worst_case_stay_within_limit(file_sqlite_db, set_limit):
    set_limit("daily", LIMIT, "enforce")

    served, refused, errors = fire(64, output_tokens=100)

    assert errors == []
    assert served + refused == 64
    assert served >= 10  # released headroom may serve more than ten
    _assert_books_balance(served=served, limit_nanos=nanos_from_usd(LIMIT))


# --- PostgreSQL, two server processes ---------------------------------------------------------


def _run(args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    done = subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.integration
def test_two_processes_never_overspend_on_postgresql(scratch_pg_database: str) -> None:
    import psycopg

    race_url = scratch_pg_database
    env = {**os.environ, "DATABASE_URL": race_url, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    env.update(
        RHETOR_BUDGET_DAILY_LIMIT="",
        RHETOR_BUDGET_WEEKLY_LIMIT="",
        RHETOR_BUDGET_MONTHLY_LIMIT="",
        RHETOR_TIMEZONE="UTC",
    )
    py = sys.executable
    # --skip-checks: this proof is about the budget, not about URL checks of other apps.
    _run([py, "manage.py", "migrate", "--no-input", "-v", "0", "--skip-checks"], env)
    _run(
        [
            py,
            "-c",
            "import django; django.setup(); from budget import services; "
            f"services.budget_limit_set(period='daily', limit_nanos={nanos_from_usd(LIMIT)},"
            " enforcement='enforce')",
        ],
        env,
    )
    start_at = time.time() + 4.0
    worker = [py, "-m", "tests.budget.race_worker", "--threads", "32"]
    procs = [
        subprocess.Popen(
            [*worker, "--start-at", str(start_at)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))

    assert [r["errors"] for r in results] == [[], []]
    served = sum(r["served"] for r in results)
    refused = sum(r["refused"] for r in results)
    assert (served, refused) == (10, 54)
    with psycopg.connect(pg_conninfo(race_url)) as conn:
        spent, reserved = conn.execute(
            "SELECT spent_nanos, reserved_nanos FROM budget_spendcounter"
            " WHERE period='daily' AND scope_kind='all'"
        ).fetchone()
        ledger, ok = conn.execute(
            "SELECT coalesce(sum(cost_nanos), 0), count(*) FROM budget_usagerecord"
            " WHERE status='ok'"
        ).fetchone()
        settled = conn.execute(
            "SELECT coalesce(sum(reserved_nanos), 0) FROM budget_budgetreservation"
            " WHERE state='settled'"
        ).fetchone()[0]
    assert spent == ledger == settled == 10 * PER_REQUEST <= nanos_from_usd(LIMIT)
    assert reserved == 0
    assert ok == served

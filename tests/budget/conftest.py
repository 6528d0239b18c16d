"""Budget test fixtures. Data is built through the budget services (Zulip's "use action
functions"), never by writing model rows directly."""

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from budget import services
from budget.models import BudgetLimit
from budget.policies import nanos_from_usd
from budget.services import Reservation


@pytest.fixture(autouse=True)
def _budget_env(settings: Any) -> None:
    """Every test starts from no env limits, UTC and no bypass, whatever the shell says."""
    settings.RHETOR_TIMEZONE = "UTC"
    settings.RHETOR_BUDGET_POLICY = "warn"
    settings.RHETOR_BUDGET_DAILY_LIMIT = ""
    settings.RHETOR_BUDGET_WEEKLY_LIMIT = ""
    settings.RHETOR_BUDGET_MONTHLY_LIMIT = ""
    settings.RHETOR_ALLOW_BUDGET_BYPASS = False
    return


SetLimit = Callable[..., BudgetLimit]


@pytest.fixture
def set_limit() -> SetLimit:
    def _set(
        period: str = "daily", amount: str | None = "1", policy: str = "enforce", scope: str = "all"
    ) -> BudgetLimit:
        kind, value = services.parse_scope(scope)
        return services.budget_limit_set(
            period=period,
            limit_nanos=None if amount is None else nanos_from_usd(amount),
            scope_kind=kind,
            scope_value=value,
            enforcement=policy,
        )

    return _set


Reserve = Callable[..., Reservation]


@pytest.fixture
def reserve() -> Reserve:
    def _reserve(**overrides: Any) -> Reservation:
        args: dict[str, Any] = {
            "request_id": uuid.uuid4(),
            "attempt": 1,
            "provider": "anthropic",
            "model": "claude-3-haiku-20240307",
            "component": "ergon",
            "task_type": "chat",
            "context_id": "ergon:default",
            "input_tokens": 1000,
            "max_tokens": 1000,
        }
        args.update(overrides)
        return services.budget_reserve(**args)

    return _reserve


@pytest.fixture
def file_sqlite_db(transactional_db: None, tmp_path: Any) -> Iterator[str]:
    """Move the test database from SQLite's shared in-memory cache to a file for one test.

    Threads cannot share the in-memory test database under write contention: shared-cache
    tables report "database table is locked" at once, without the busy timeout. A file in
    WAL mode makes concurrent writers queue, as in production. The in-memory database
    (schema, migrations' seed data and the fixtures' rows so far) is copied with SQLite's
    backup API; the original is put back afterwards. Other backends pass through.
    """
    import sqlite3

    from django.db import connection, connections

    # A transactional test before this one may have flushed the seeded prices.
    services.model_prices_seed()
    if connection.vendor != "sqlite" or not connection.is_in_memory_db():
        yield str(connection.settings_dict["NAME"])
        return
    connection.ensure_connection()
    memory_conn = connection.connection
    memory_name = connection.settings_dict["NAME"]
    path = str(tmp_path / "budget-race.sqlite3")
    target = sqlite3.connect(path)
    memory_conn.backup(target)
    target.close()
    connection.connection = None
    connection.settings_dict["NAME"] = path
    try:
        yield path
    finally:
        connections.close_all()
        connection.settings_dict["NAME"] = memory_name
        connection.connection = memory_conn

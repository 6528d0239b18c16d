"""The per-worker cache of prices and limits (budget.selectors.config) and the
settle's batched counter UPDATE."""

import datetime as dt
import io
from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone

from budget import selectors, services
from budget.errors import BudgetExceeded
from budget.models import BudgetLimit, ModelPrice, SpendCounter, UsageRecord
from budget.policies import nanos_from_usd
from budget.selectors import BUDGET_CONFIG_VERSION_KEY, BudgetConfigCache
from budget.selectors import config as selectors_config
from budget.services import counters
from llm.providers.base import Usage


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> tuple[BudgetConfigCache, FakeClock]:
    """This worker's cache, rechecked every second of a clock the test moves."""
    clock = FakeClock()
    cache_ = BudgetConfigCache(recheck_seconds=1.0, clock=clock)
    monkeypatch.setattr(selectors_config, "worker_budget_config", cache_)
    return cache_, clock


def _shared_version() -> Any:
    return cache.get(BUDGET_CONFIG_VERSION_KEY)


def _on_another_worker(monkeypatch: pytest.MonkeyPatch, change: Callable[[], object]) -> None:
    """An operator's change made through another worker (its own copy, not this one's),
    committed."""
    from django.test import TestCase

    with monkeypatch.context() as other_worker:
        other_worker.setattr(selectors_config, "worker_budget_config", BudgetConfigCache())
        with TestCase.captureOnCommitCallbacks(execute=True):
            change()


@pytest.mark.django_db
def test_an_operator_lowering_a_limit_on_another_worker_is_enforced_on_the_next_request(
    worker, set_limit, reserve, monkeypatch
):
    cache_, _ = worker
    set_limit("daily", "1", "enforce")
    reserve()  # this worker loads the $1 limit
    loads = cache_.loads

    _on_another_worker(monkeypatch, lambda: set_limit("daily", "0.001", "enforce"))

    # No time passes: the limits' fingerprint differs, so this worker reloads at once.
    with pytest.raises(BudgetExceeded):
        reserve()
    assert cache_.loads == loads + 1
    assert UsageRecord.objects.exists() is False


@pytest.mark.django_db
def test_an_operator_price_change_on_another_worker_applies_after_the_recheck(
    worker, reserve, monkeypatch
):
    cache_, clock = worker
    before = reserve().reserved_nanos  # claude-3-haiku: 1000 * 250 + 1000 * 1250
    loads = cache_.loads

    _on_another_worker(
        monkeypatch,
        lambda: services.model_price_set(
            provider="anthropic",
            model="claude-3-haiku",
            input_price=1,
            output_price=1,
            effective_from=timezone.now() - dt.timedelta(seconds=1),
        ),
    )

    # Until the recheck interval is over this worker quotes from its copy...
    clock.now += 0.5
    assert reserve().reserved_nanos == before == 1_500_000
    assert cache_.loads == loads
    # ...and the first request after it sees the new version and reloads.
    clock.now += 0.5
    assert reserve().reserved_nanos == 2000
    assert cache_.loads == loads + 1


@pytest.mark.django_db
def test_a_limit_set_on_this_worker_applies_to_its_next_request_at_once(worker, set_limit, reserve):
    set_limit("daily", "1", "enforce")
    reserve()

    set_limit("daily", "0.001", "enforce")  # no commit, no time passes

    with pytest.raises(BudgetExceeded):
        reserve()


@pytest.mark.django_db
def test_steady_state_reserve_reads_no_configuration(worker, set_limit, reserve):
    cache_, clock = worker
    set_limit("daily", "1", "enforce")
    reserve()
    loads = cache_.loads

    for _ in range(3):
        clock.now += 5  # rechecks find the same version
        reserve()

    assert cache_.loads == loads


def _limit_set() -> None:
    services.budget_limit_set(period="daily", limit_nanos=5, enforcement="enforce")


def _policy_set() -> None:
    services.budget_policy_set(period="weekly", policy="enforce")


def _reset() -> None:
    services.budget_reset(period="daily")


def _price_set() -> None:
    services.model_price_set(provider="openai", model="gpt-x", input_price=1, output_price=2)


def _prices_seed() -> None:
    ModelPrice.objects.all().delete()
    services.model_prices_seed()


def _set_price_command() -> None:
    call_command(
        "set_price",
        "openai",
        "gpt-x",
        "--input",
        "1",
        "--output",
        "2",
        stdout=io.StringIO(),
    )


def _budget_reset_command() -> None:
    call_command("budget_reset", "--period", "daily", stdout=io.StringIO())


def _orm_limit_edit() -> None:  # an admin save or a shell fix, past the services
    BudgetLimit.objects.create(period="monthly", limit_nanos=7, enforcement="warn")


def _orm_limit_delete() -> None:  # the admin's delete action
    BudgetLimit.objects.all().delete()


def _orm_price_edit() -> None:
    price = ModelPrice.objects.get(provider="openai", model="gpt-4")
    price.source = "fixed by hand"
    price.save()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_limit_set, id="_case_budget_limit_set"),
        pytest.param(_policy_set, id="_case_budget_policy_set"),
        pytest.param(_reset, id="_case_budget_reset"),
        pytest.param(_price_set, id="_case_model_price_set"),
        pytest.param(_prices_seed, id="_case_model_prices_seed"),
        pytest.param(_set_price_command, id="_case_set_price_command"),
        pytest.param(_budget_reset_command, id="_case_budget_reset_command"),
        pytest.param(_orm_limit_edit, id="_case_orm_limit_save"),
        pytest.param(_orm_limit_delete, id="_case_orm_limit_delete"),
        pytest.param(_orm_price_edit, id="_case_orm_price_save"),
    ],
)
def test_every_write_of_prices_or_limits_bumps_the_shared_version(
    change: Callable[[], None], worker, set_limit, django_capture_on_commit_callbacks
):
    cache_, _ = worker
    set_limit("daily", "1", "enforce")
    selectors.budget_config()
    before = _shared_version()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        change()

    assert callbacks  # the bump waits for the commit
    assert _shared_version() != before
    assert cache_.value is None  # this worker reloads on its next use


@pytest.mark.django_db
def test_nothing_is_bumped_when_the_transaction_does_not_commit(
    set_limit, django_capture_on_commit_callbacks
):
    selectors.budget_config()
    before = _shared_version()

    with django_capture_on_commit_callbacks(execute=False):
        set_limit("daily", "1", "enforce")

    assert _shared_version() == before


# --- The cached quote is model_price_get's ------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("anthropic", "claude-3-haiku-20240307"),  # family
        ("anthropic", "claude-3-opus"),  # own row
        ("ollama", "llama3:8b"),  # the provider's "*"
        ("openai", "gpt-9-unknown"),  # fallback: the provider's highest
        ("mistral", "large"),  # fallback: any provider's highest
        ("openai", "gpt-4o-2024-05-13"),
    ],
)
def test_cached_quote_equals_the_database_lookup(provider, model):
    at = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    services.model_price_set(
        provider="openai",
        model="gpt-4o",
        input_price=2_500,
        output_price=10_000,
        effective_from=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    services.model_price_set(  # in the future of `at`: not in force yet
        provider="openai",
        model="gpt-4o",
        input_price=1,
        output_price=1,
        effective_from=dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
    )
    config = selectors.budget_config_load()

    assert config.quote(provider=provider, model=model, at=at) == selectors.model_price_get(
        provider=provider, model=model, at=at
    )


@pytest.mark.django_db
def test_cached_quote_switches_when_a_scheduled_price_starts():
    start = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    services.model_price_set(
        provider="openai", model="gpt-4", input_price=7, output_price=9, effective_from=start
    )
    config = selectors.budget_config_load()
    second = dt.timedelta(seconds=1)

    before = config.quote(provider="openai", model="gpt-4", at=start - second)
    after = config.quote(provider="openai", model="gpt-4", at=start)
    again = config.quote(provider="openai", model="gpt-4", at=start - second)

    assert (before.price.input_price, before.price.output_price) == (30_000, 60_000)
    assert (after.price.input_price, after.price.output_price) == (7, 9)
    assert again == before


@pytest.mark.django_db
def test_cached_limits_follow_the_env_defaults(settings, set_limit):
    set_limit("weekly", "3", "warn", scope="provider:anthropic")
    config = selectors.budget_config_load()

    for daily in ("2", "4"):
        settings.RHETOR_BUDGET_DAILY_LIMIT = daily
        limits = config.limits_for(provider="anthropic", component="ergon")

        assert limits == selectors.effective_limits_for(provider="anthropic", component="ergon")
        assert {lim.limit_nanos for lim in limits if lim.period == "daily"} == {
            nanos_from_usd(daily)
        }
    assert config.limits_for(provider="openai", component="") == selectors.effective_limits_for(
        provider="openai", component=""
    )


# --- Settle: all counters in one UPDATE, stale ids handled --------------------------------


def _counters() -> dict[tuple[str, str, str], tuple[int, int]]:
    return {
        (c.period, c.scope_kind, c.scope_value): (c.spent_nanos, c.reserved_nanos)
        for c in SpendCounter.objects.all()
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    "poison",
    [
        pytest.param("none", id="_case_remembered_ids_good"),
        pytest.param("swapped", id="_case_ids_of_two_counters_swapped"),
        pytest.param("collide", id="_case_two_counters_remember_one_id"),
        pytest.param("missing", id="_case_id_of_a_row_that_is_gone"),
    ],
)
def test_settle_moves_every_counter_once_even_with_stale_remembered_ids(
    poison, set_limit, reserve, django_capture_on_commit_callbacks
):
    set_limit("daily", "1", "enforce")
    set_limit("monthly", "1", "enforce", scope="component:ergon")
    with django_capture_on_commit_callbacks(execute=True):  # the counter ids are remembered
        _settle(reserve())
    r = reserve()  # holds 1_500_000 on two counters; settle charges nine
    keys = sorted(
        (c.period, c.scope_kind, c.scope_value, c.window_start) for c in SpendCounter.objects.all()
    )
    ids = counters._counter_ids
    assert len(keys) == 9
    assert all(key in ids for key in keys)
    if poison == "swapped":
        ids[keys[0]], ids[keys[-1]] = ids[keys[-1]], ids[keys[0]]
    elif poison == "collide":
        ids[keys[1]] = ids[keys[0]]
    elif poison == "missing":
        ids[keys[0]] = 10**12

    _settle(r)

    cost = 1000 * 250 + 400 * 1250
    assert set(_counters().values()) == {(2 * cost, 0)}


def _settle(r: services.Reservation) -> None:
    services.budget_settle(
        reservation_id=r.reservation_id, usage=Usage(1000, 400), status="ok", latency_ms=1
    )

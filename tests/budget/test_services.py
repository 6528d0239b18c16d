import datetime as dt
import uuid

import pytest
from django.test import TestCase

from budget import services
from budget.errors import BudgetExceeded, ReservationNotFound
from budget.models import (
    BudgetReservation,
    BudgetReset,
    ModelPrice,
    SpendCounter,
    UnpricedModel,
    UsageRecord,
)
from budget.policies import nanos_from_usd
from budget.selectors import budget_status, spend_counter_get
from llm.providers.base import Usage
from rhetor_site.errors import InvalidInput

# claude-3-haiku: 250 / 1250 nano-USD per token.
HAIKU_1K_1K = 1000 * 250 + 1000 * 1250  # 1_500_000 nanos = $0.0015


def _counter(period: str = "daily", scope: str = "all") -> SpendCounter | None:
    kind, value = services.parse_scope(scope)
    return spend_counter_get(period=period, scope_kind=kind, scope_value=value)


@pytest.mark.django_db
def test_reserve_holds_worst_case_on_every_limit(set_limit, reserve):
    set_limit("daily", "1", "enforce")
    set_limit("monthly", "10", "warn", scope="provider:anthropic")
    set_limit("weekly", "5", "enforce", scope="component:ergon")

    r = reserve()

    assert r.reserved_nanos == HAIKU_1K_1K
    assert r.price_is_fallback is False
    assert r.warnings == []
    assert _counter("daily").reserved_nanos == HAIKU_1K_1K
    assert _counter("monthly", "provider:anthropic").reserved_nanos == HAIKU_1K_1K
    assert _counter("weekly", "component:ergon").reserved_nanos == HAIKU_1K_1K
    assert UsageRecord.objects.exists() is False


@pytest.mark.django_db
def test_settle_releases_hold_and_charges_actual_cost(set_limit, reserve):
    set_limit("daily", "1", "enforce")
    r = reserve()

    record = services.budget_settle(
        reservation_id=r.reservation_id,
        usage=Usage(input_tokens=1000, output_tokens=200),
        status="ok",
        latency_ms=42,
    )

    assert record.cost_nanos == 1000 * 250 + 200 * 1250
    assert record.reserved_nanos == HAIKU_1K_1K
    assert record.source == "provider"
    assert record.price.model == "claude-3-haiku"
    counter = _counter("daily")
    assert (counter.spent_nanos, counter.reserved_nanos) == (500_000, 0)
    # Every scope's counter is charged, with or without a limit.
    assert _counter("monthly", "component:ergon").spent_nanos == 500_000
    assert _counter("weekly", "provider:anthropic").spent_nanos == 500_000


@pytest.mark.django_db
def test_settle_is_idempotent(set_limit, reserve):
    set_limit("daily", "1", "enforce")
    r = reserve()
    first = services.budget_settle(
        reservation_id=r.reservation_id, usage=Usage(10, 10), status="ok", latency_ms=1
    )

    second = services.budget_settle(
        reservation_id=r.reservation_id, usage=Usage(999, 999), status="error", latency_ms=9
    )

    assert second.pk == first.pk
    assert UsageRecord.objects.count() == 1
    counter = _counter("daily")
    assert (counter.spent_nanos, counter.reserved_nanos) == (10 * 250 + 10 * 1250, 0)


@pytest.mark.django_db
def test_reserve_fails_when_limit_reached_and_holds_nothing(set_limit, reserve):
    set_limit("daily", "0.002", "enforce")
    set_limit("monthly", "1", "enforce", scope="provider:anthropic")
    first = reserve()  # 0.0015 of 0.002

    with pytest.raises(BudgetExceeded) as exc_info:
        reserve()

    exc = exc_info.value
    assert exc.status == 402
    assert exc.as_body() == {
        "error": exc.message,
        "code": "budget_exceeded",
        "period": "daily",
        "scope": "all",
        "limit": "0.002",
        "spent": "0.00",
        "reserved": "0.0015",
        "needed": "0.0015",
        "provider": "anthropic",
        "model": "claude-3-haiku-20240307",
    }
    # All or nothing: the monthly provider hold of the refused request was rolled back.
    assert _counter("monthly", "provider:anthropic").reserved_nanos == first.reserved_nanos
    assert _counter("daily").reserved_nanos == first.reserved_nanos
    assert BudgetReservation.objects.count() == 1
    assert UsageRecord.objects.exists() is False


@pytest.mark.django_db
def test_reserve_allowed_exactly_at_limit(set_limit, reserve):
    set_limit("daily", "0.0015", "enforce")

    r = reserve()

    assert _counter("daily").reserved_nanos == r.reserved_nanos == nanos_from_usd("0.0015")


@pytest.mark.django_db
def test_component_limit_applies_only_to_its_component(set_limit, reserve):
    set_limit("daily", "0.001", "enforce", scope="component:ergon")

    reserve(component="athena")
    with pytest.raises(BudgetExceeded) as exc_info:
        reserve(component="ergon")

    assert exc_info.value.details["scope"] == "component:ergon"


@pytest.mark.django_db
def test_provider_limit_applies_only_to_its_provider(set_limit, reserve):
    set_limit("daily", "0.001", "enforce", scope="provider:openai")

    reserve()  # anthropic
    with pytest.raises(BudgetExceeded) as exc_info:
        reserve(provider="openai", model="gpt-3.5-turbo")

    assert exc_info.value.details["scope"] == "provider:openai"


@pytest.mark.django_db
def test_free_model_is_served_even_when_budget_is_spent(set_limit, reserve):
    set_limit("daily", "0", "enforce")

    r = reserve(provider="simulated", model="simulated-standard")

    assert r.reserved_nanos == 0
    assert _counter("daily") is None


@pytest.mark.django_db
def test_warn_policy_serves_and_warns_at_80_percent_and_on_crossing(set_limit, reserve):
    set_limit("daily", "0.0035", "warn")

    quiet = reserve()  # 0.0015 of 0.0035 = 42%
    at_85 = reserve()  # 0.0030 = 85%
    crossing = reserve()  # 0.0045 > 0.0035

    assert quiet.warnings == []
    assert at_85.warnings == ["daily budget for all providers at 85%: $0.003 of $0.0035"]
    assert crossing.warnings == [
        "daily budget for all providers crossed: $0.0045 of $0.0035 with this request"
        " (policy warn: request served)"
    ]
    assert _counter("daily").reserved_nanos == 3 * HAIKU_1K_1K


@pytest.mark.django_db
def test_ignore_policy_tracks_without_holding(set_limit, reserve):
    set_limit("daily", "0.001", "ignore")

    r = reserve()
    services.budget_settle(
        reservation_id=r.reservation_id, usage=Usage(1000, 1000), status="ok", latency_ms=1
    )

    assert r.warnings == []
    assert r.reserved_nanos == HAIKU_1K_1K
    assert BudgetReservation.objects.get().held_counters == []
    assert _counter("daily").spent_nanos == HAIKU_1K_1K


@pytest.mark.django_db
def test_unknown_model_is_charged_at_providers_highest_price_and_flagged(reserve):
    r = reserve(provider="openai", model="gpt-9-ultra")

    gpt4 = ModelPrice.objects.get(provider="openai", model="gpt-4")
    assert r.price_id == gpt4.pk
    assert r.price_is_fallback is True
    assert r.reserved_nanos == 1000 * 30_000 + 1000 * 60_000
    assert list(UnpricedModel.objects.values_list("provider", "model")) == [
        ("openai", "gpt-9-ultra")
    ]
    record = services.budget_settle(
        reservation_id=r.reservation_id, usage=Usage(1, 1), status="ok", latency_ms=1
    )
    assert (record.price_id, record.price_is_fallback, record.cost_nanos) == (gpt4.pk, True, 90_000)


@pytest.mark.django_db
def test_unknown_provider_is_charged_at_the_highest_price_of_all():
    quote_reservation = services.budget_reserve(
        request_id=uuid.uuid4(),
        attempt=1,
        provider="mistral",
        model="mistral-large",
        component="",
        task_type="chat",
        context_id="default",
        input_tokens=1,
        max_tokens=1,
    )

    assert quote_reservation.price_is_fallback is True
    assert quote_reservation.reserved_nanos == 90_000  # claude-3-opus and gpt-4 tie at 90_000


@pytest.mark.django_db
def test_dated_model_id_is_priced_by_its_family():
    cost, price = services.cost_for(
        provider="anthropic", model="claude-3-opus-20240229", usage=Usage(10, 10)
    )

    assert (price.model, cost) == ("claude-3-opus", 10 * 15_000 + 10 * 75_000)


@pytest.mark.django_db
def test_newer_price_takes_effect_and_history_stays(reserve):
    services.model_price_set(
        provider="openai", model="gpt-4o", input_price=2_500, output_price=10_000, source="vendor"
    )

    r = reserve(provider="openai", model="gpt-4o", input_tokens=10, max_tokens=10)

    assert r.reserved_nanos == 10 * 2_500 + 10 * 10_000
    assert ModelPrice.objects.filter(provider="openai", model="gpt-4o").count() == 2


@pytest.mark.django_db
def test_charged_price_cannot_be_changed(reserve):
    r = reserve()
    services.budget_settle(
        reservation_id=r.reservation_id, usage=None, status="error", latency_ms=1
    )
    price = ModelPrice.objects.get(pk=r.price_id)

    with pytest.raises(InvalidInput):
        services.model_price_set(
            provider=price.provider,
            model=price.model,
            input_price=1,
            output_price=1,
            effective_from=price.effective_from,
        )

    price.refresh_from_db()
    assert (price.input_price, price.output_price) == (250, 1250)


@pytest.mark.parametrize(
    ("_case", "usage", "status", "cost", "source", "tokens"),
    [
        (
            "complete",
            Usage(1000, 300, "provider"),
            "ok",
            1000 * 250 + 300 * 1250,
            "provider",
            (1000, 300),
        ),
        (
            "cancelled_by_client",
            Usage(1000, 40, "partial"),
            "cancelled",
            1000 * 250 + 40 * 1250,
            "partial",
            (1000, 40),
        ),
        (
            "cut_by_upstream",
            Usage(1000, 77, "partial"),
            "error",
            1000 * 250 + 77 * 1250,
            "partial",
            (1000, 77),
        ),
        ("failed_reported", Usage(1000, 0, "provider"), "error", 1000 * 250, "provider", (1000, 0)),
        ("failed_before_first_chunk", None, "error", 0, "none", (0, 0)),
        (
            "estimated",
            Usage(900, 100, "estimate"),
            "ok",
            900 * 250 + 100 * 1250,
            "estimate",
            (900, 100),
        ),
    ],
)
@pytest.mark.django_db
def test_stream_outcomes_are_metered(
    set_limit, reserve, _case, usage, status, cost, source, tokens
):
    set_limit("daily", "1", "enforce")
    r = reserve()

    record = services.budget_settle(
        reservation_id=r.reservation_id, usage=usage, status=status, latency_ms=5, error=_case
    )

    assert (record.cost_nanos, record.source, record.status) == (cost, source, status)
    assert (record.input_tokens, record.output_tokens) == tokens
    counter = _counter("daily")
    assert (counter.spent_nanos, counter.reserved_nanos) == (cost, 0)


@pytest.mark.django_db
def test_each_attempt_is_its_own_record(set_limit, reserve):
    set_limit("daily", "1", "enforce")
    request_id = uuid.uuid4()
    first = reserve(request_id=request_id, attempt=1)
    services.budget_settle(
        reservation_id=first.reservation_id, usage=None, status="error", latency_ms=3
    )
    second = reserve(
        request_id=request_id,
        attempt=2,
        provider="openai",
        model="gpt-3.5-turbo",
        is_fallback=True,
    )
    services.budget_settle(
        reservation_id=second.reservation_id, usage=Usage(10, 10), status="ok", latency_ms=3
    )

    records = list(
        UsageRecord.objects.order_by("attempt").values_list(
            "attempt", "provider", "status", "is_fallback", "cost_nanos"
        )
    )
    assert records == [
        (1, "anthropic", "error", False, 0),
        (2, "openai", "ok", True, 10 * 500 + 10 * 1500),
    ]


@pytest.mark.django_db
def test_lowering_max_tokens_to_fit_the_budget(set_limit, reserve):
    set_limit("daily", "0.001", "enforce")  # 1_000_000 nanos

    r = reserve(input_tokens=1000, max_tokens=4000, allow_lower_max_tokens=True)

    # 1_000_000 - 1000*250 = 750_000 left -> 600 output tokens at 1250.
    assert r.max_tokens_allowed == 600
    assert r.reserved_nanos == 1_000_000
    assert r.warnings[0] == (
        "max_tokens lowered from 4000 to 600 to fit the remaining daily budget for all providers"
    )
    assert BudgetReservation.objects.get().max_tokens == 600


@pytest.mark.django_db
def test_lowering_max_tokens_refuses_below_minimum(set_limit, reserve):
    set_limit("daily", "0.0003", "enforce")  # prompt costs 0.00025: 40 output tokens left

    with pytest.raises(BudgetExceeded):
        reserve(input_tokens=1000, max_tokens=4000, allow_lower_max_tokens=True, min_max_tokens=50)

    assert BudgetReservation.objects.exists() is False
    assert SpendCounter.objects.filter(reserved_nanos__gt=0).exists() is False


@pytest.mark.django_db
def test_bypass_is_ignored_unless_the_operator_allows_it(set_limit, reserve):
    set_limit("daily", "0.001", "enforce")

    with pytest.raises(BudgetExceeded):
        reserve(bypass=True)

    assert BudgetReservation.objects.exists() is False


@pytest.mark.django_db
def test_bypass_when_allowed_serves_and_marks(settings, set_limit, reserve):
    settings.RHETOR_ALLOW_BUDGET_BYPASS = True
    set_limit("daily", "0.001", "enforce")

    r = reserve(bypass=True)
    record = services.budget_settle(
        reservation_id=r.reservation_id, usage=Usage(1000, 1000), status="ok", latency_ms=1
    )

    assert r.bypassed is True
    assert record.bypassed is True
    assert r.warnings == [
        "daily budget for all providers crossed: $0.0015 of $0.001 with this request"
        " (budget bypassed)"
    ]


@pytest.mark.django_db
def test_env_default_limit_and_policy_apply_without_rows(settings, reserve):
    settings.RHETOR_BUDGET_DAILY_LIMIT = "0.001"
    settings.RHETOR_BUDGET_POLICY = "enforce"

    with pytest.raises(BudgetExceeded) as exc_info:
        reserve()

    assert exc_info.value.details["limit"] == "0.001"


@pytest.mark.django_db
def test_limit_created_mid_window_counts_what_was_already_spent(set_limit, reserve):
    r = reserve()
    services.budget_settle(
        reservation_id=r.reservation_id, usage=Usage(1000, 1000), status="ok", latency_ms=1
    )
    set_limit("daily", "0.002", "enforce")

    with pytest.raises(BudgetExceeded) as exc_info:
        reserve()

    assert exc_info.value.details["spent"] == "0.0015"


@pytest.mark.django_db
def test_settle_unknown_reservation_raises():
    with pytest.raises(ReservationNotFound):
        services.budget_settle(reservation_id=12345, usage=None, status="ok", latency_ms=1)

    assert UsageRecord.objects.exists() is False


@pytest.mark.django_db
def test_settle_rejects_unknown_status(reserve):
    r = reserve()

    with pytest.raises(InvalidInput):
        services.budget_settle(
            reservation_id=r.reservation_id, usage=None, status="done", latency_ms=1
        )

    assert BudgetReservation.objects.get().state == "held"


@pytest.mark.django_db
def test_budget_reset_moves_baseline_and_keeps_ledger(set_limit, reserve):
    set_limit("daily", "0.002", "enforce")
    r = reserve()
    services.budget_settle(
        reservation_id=r.reservation_id, usage=Usage(1000, 1000), status="ok", latency_ms=1
    )

    reset = services.budget_reset(period="daily", actor="ops", note="new sprint")

    assert (reset.baseline_before, reset.spent_nanos) == (0, HAIKU_1K_1K)
    assert UsageRecord.objects.count() == 1
    assert budget_status().daily.usage_nanos == 0
    counter = _counter("daily")
    assert (counter.spent_nanos, counter.baseline_nanos) == (HAIKU_1K_1K, HAIKU_1K_1K)
    reserve()  # fits again
    assert BudgetReset.objects.count() == 1


@pytest.mark.django_db
def test_stale_reservations_are_released(set_limit, reserve):
    set_limit("daily", "1", "enforce")
    r = reserve()
    BudgetReservation.objects.filter(pk=r.reservation_id).update(
        created_at=BudgetReservation.objects.get().created_at - dt.timedelta(hours=2)
    )

    released = services.reservation_release_stale(older_than=dt.timedelta(hours=1))

    assert released == 1
    record = UsageRecord.objects.get()
    assert (record.status, record.cost_nanos) == ("error", 0)
    assert _counter("daily").reserved_nanos == 0


@pytest.mark.django_db
def test_prices_are_reseeded_when_the_table_was_emptied(reserve):
    ModelPrice.objects.all().delete()

    r = reserve(provider="simulated", model="simulated-standard")

    assert r.reserved_nanos == 0
    assert ModelPrice.objects.count() == 10


class AsyncTwinsTests(TestCase):
    async def test_reserve_and_settle_from_a_coroutine(self):
        r = await services.abudget_reserve(
            request_id=uuid.uuid4(),
            attempt=1,
            provider="anthropic",
            model="claude-3-haiku",
            component="ergon",
            task_type="chat",
            context_id="ergon:default",
            input_tokens=10,
            max_tokens=10,
        )
        record = await services.abudget_settle(
            reservation_id=r.reservation_id, usage=Usage(10, 5), status="ok", latency_ms=7
        )

        assert record.cost_nanos == 10 * 250 + 5 * 1250
        assert await UsageRecord.objects.acount() == 1

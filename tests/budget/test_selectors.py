import pytest
from django.db import connection

from budget import selectors, services
from llm.providers.base import Usage


@pytest.mark.django_db
def test_cheaper_alternatives_go_down_tier_by_tier_cheapest_last():
    alternatives = selectors.cheaper_alternatives(
        provider="anthropic", model="claude-3-opus-20240229"
    )

    assert alternatives == [
        ("anthropic", "claude-3-sonnet"),
        ("anthropic", "claude-3-5-sonnet"),
        ("openai", "gpt-4-turbo"),
        ("openai", "gpt-4o"),
        ("anthropic", "claude-3-haiku"),
        ("openai", "gpt-3.5-turbo"),
        ("ollama", "*"),
        ("simulated", "*"),
    ]


@pytest.mark.django_db
def test_cheaper_alternatives_follow_the_task_provider_order():
    alternatives = selectors.cheaper_alternatives(
        provider="anthropic",
        model="claude-3-sonnet",
        provider_order=["openai", "anthropic", "ollama"],
    )

    assert alternatives == [
        ("anthropic", "claude-3-5-sonnet"),  # same tier, strictly cheaper
        ("openai", "gpt-3.5-turbo"),
        ("anthropic", "claude-3-haiku"),
        ("ollama", "*"),
        ("simulated", "*"),
    ]


@pytest.mark.django_db
def test_cheaper_alternatives_among_candidates_price_unknown_ones_conservatively():
    alternatives = selectors.cheaper_alternatives(
        provider="openai",
        model="gpt-4-turbo",
        candidates=[
            ("openai", "gpt-4-turbo"),
            ("openai", "gpt-4o-mini"),  # unpriced: charged as gpt-4, never cheaper
            ("anthropic", "claude-3-haiku-20240307"),
            ("ollama", "llama3"),
        ],
    )

    assert alternatives == [("anthropic", "claude-3-haiku-20240307"), ("ollama", "llama3")]


@pytest.mark.django_db
def test_free_model_has_no_cheaper_alternative():
    assert selectors.cheaper_alternatives(provider="simulated", model="simulated-standard") == []


@pytest.mark.django_db
def test_budget_status_payload_for_the_websocket(settings, set_limit):
    settings.RHETOR_BUDGET_MONTHLY_LIMIT = "100"
    set_limit("daily", "5", "warn")

    payload = selectors.budget_status().as_status_payload()

    assert payload == {
        "daily_usage": "0.00",
        "daily_limit": "5.00",
        "weekly_usage": "0.00",
        "weekly_limit": None,
        "monthly_usage": "0.00",
        "monthly_limit": "100.00",
        "budget_enabled": True,
    }


@pytest.mark.django_db
def test_budget_status_is_two_queries(django_assert_num_queries, set_limit):
    set_limit("daily", "5", "warn")

    with django_assert_num_queries(2):
        selectors.budget_status()


@pytest.mark.django_db
def test_model_price_lookup_is_one_query(django_assert_num_queries):
    with django_assert_num_queries(1):
        quote = selectors.model_price_get(provider="anthropic", model="claude-3-haiku-20240307")

    assert quote.price.model == "claude-3-haiku"


@pytest.mark.django_db
def test_reserve_query_count_with_one_enforce_limit(
    django_assert_num_queries, set_limit, reserve, django_capture_on_commit_callbacks
):
    set_limit("daily", "5", "enforce")
    with django_capture_on_commit_callbacks(execute=True):
        reserve()  # warms the counter-id cache (ids are remembered once committed)

    # the limits' fingerprint, [SAVEPOINT], conditional UPDATE, reservation INSERT,
    # [RELEASE]; in production the bracketed pair is BEGIN ... COMMIT. Price and limits
    # come from the worker's cache.
    with django_assert_num_queries(5):
        reserve()


@pytest.mark.django_db
def test_settle_query_count_with_one_enforce_limit(
    django_assert_num_queries, set_limit, reserve, django_capture_on_commit_callbacks
):
    set_limit("daily", "5", "enforce")
    with django_capture_on_commit_callbacks(execute=True):  # counter ids remembered
        warm = reserve()
        services.budget_settle(
            reservation_id=warm.reservation_id, usage=Usage(10, 10), status="ok", latency_ms=1
        )
    r = reserve()

    # [SAVEPOINT], claim-and-read (UPDATE ... RETURNING), one UPDATE of the six counters,
    # usage record INSERT, [RELEASE]; PostgreSQL first locks the counters in key order
    # (SELECT ... FOR UPDATE).
    with django_assert_num_queries(6 if connection.vendor == "postgresql" else 5):
        services.budget_settle(
            reservation_id=r.reservation_id, usage=Usage(10, 10), status="ok", latency_ms=1
        )


@pytest.mark.django_db
def test_scope_parsing_rejects_garbage():
    from rhetor_site.errors import InvalidInput

    assert services.parse_scope("provider:openai") == ("provider", "openai")
    with pytest.raises(InvalidInput):
        services.parse_scope("team:x")

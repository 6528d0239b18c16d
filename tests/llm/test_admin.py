"""The operator console: the dashboard's numbers, the ledger's filters and breakdowns
(Ergon's spend yesterday by model and prompt version), cross links, and task routes edited
in the admin through the services."""

import re
from typing import Any

import pytest
from django.urls import reverse

from budget.selectors import percentile, usage_stats_by_model
from llm.dashboard import spend_level
from llm.models import TaskRoute
from llm.route_table import route_table, task_routes_seed
from llm.routes import Target
from tests.llm.ledger import FAILURE, GPT4O_COST, HAIKU_COST, seed_ledger

pytestmark = pytest.mark.django_db


@pytest.fixture
def ledger(settings: Any) -> Any:
    settings.RHETOR_TIMEZONE = "UTC"
    settings.RHETOR_BUDGET_POLICY = "warn"
    settings.RHETOR_BUDGET_DAILY_LIMIT = ""
    settings.RHETOR_BUDGET_WEEKLY_LIMIT = ""
    settings.RHETOR_BUDGET_MONTHLY_LIMIT = ""
    return seed_ledger()


def text_of(response: Any) -> str:
    """The page's text without tags and with whitespace collapsed."""
    html = response.content.decode()
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.mark.parametrize(
    ("_case", "values", "pct", "expected"),
    [
        ("empty", [], 50, None),
        ("one", [7], 95, 7),
        ("median_of_ten", list(range(100, 1001, 100)), 50, 500),
        ("p95_of_ten", list(range(100, 1001, 100)), 95, 1000),
        ("p95_of_hundred", list(range(1, 101)), 95, 95),
    ],
)
def test_percentile_is_nearest_rank(_case: str, values: list[int], pct: int, expected: Any) -> None:
    assert percentile(values, pct) == expected


def test_stats_per_model_count_errors_and_latency(ledger: Any) -> None:
    import datetime as dt

    from django.utils import timezone

    stats = {
        (s.provider, s.model): s
        for s in usage_stats_by_model(since=timezone.now() - dt.timedelta(hours=24))
    }

    haiku = stats[("anthropic", "claude-3-haiku-20240307")]
    assert (haiku.requests, haiku.errors, haiku.p50_ms, haiku.p95_ms) == (10, 0, 500, 1000)
    gpt = stats[("openai", "gpt-4o")]
    assert (gpt.requests, gpt.errors, gpt.error_rate, gpt.p50_ms) == (1, 1, 100.0, None)


@pytest.mark.parametrize(
    ("_case", "usage", "limit", "expected"),
    [
        ("no_limit", 5, None, "none"),
        ("below", 79, 100, "ok"),
        ("amber_at_80", 80, 100, "warn"),
        ("at_the_limit", 100, 100, "warn"),
        ("past_the_limit", 101, 100, "over"),
    ],
)
def test_spend_bar_colour(_case: str, usage: int, limit: int | None, expected: str) -> None:
    import datetime as dt

    from budget.selectors import PeriodStatus

    status = PeriodStatus("daily", dt.date(2026, 1, 1), usage, 0, limit, "enforce")
    assert spend_level(status) == expected


def test_dashboard_shows_spend_models_failures_and_providers(
    admin_client: Any, ledger: Any
) -> None:
    from budget import services

    services.budget_limit_set(
        period="daily", limit_nanos=10_000_000, scope_kind="all", scope_value="", enforcement="warn"
    )  # $0.01; today's spend is 10 x $0.000375 = $0.00375 (the failure charged nothing)

    response = admin_client.get(reverse("admin:index"))

    assert response.status_code == 200
    page = text_of(response)
    assert "$0.00375 of $0.01 (37.5%)" in page
    assert 'id="spend-daily" data-level="ok"' in response.content.decode()
    assert "anthropic claude-3-haiku-20240307 10 0 0.0% 500 ms 1000 ms $0.00375" in page
    assert "openai gpt-4o 1 1 100.0% - - $0.00 " in page
    assert FAILURE in page
    assert reverse("admin:budget_usagerecord_change", args=[ledger.failure.pk]) in (
        response.content.decode()
    )
    assert "simulated available" in page
    # Yesterday by component: ergon 2 x haiku + 1 x gpt-4o.
    assert "ergon 3 $0.01375" in page
    assert "telos 1 $0.000375" in page


def test_dashboard_turns_red_past_the_limit(admin_client: Any, ledger: Any) -> None:
    from budget import services

    services.budget_limit_set(
        period="daily", limit_nanos=1_000_000, scope_kind="all", scope_value="", enforcement="warn"
    )

    response = admin_client.get(reverse("admin:index"))

    assert 'id="spend-daily" data-level="over"' in response.content.decode()


def test_ledger_answers_what_ergon_spent_yesterday_on_which_models_and_prompt(
    admin_client: Any, ledger: Any
) -> None:
    url = reverse("admin:budget_usagerecord_changelist")

    response = admin_client.get(url, {"component": "ergon", "day": "yesterday"})

    assert response.status_code == 200
    page = text_of(response)
    assert "Totals of the filtered records: 3 request attempts" in page
    assert "$0.01375" in page
    assert f"claude-3-haiku-20240307 2 2200 ${float(HAIKU_COST) * 2:.5f}" in page
    assert f"gpt-4o 1 1100 ${GPT4O_COST}" in page
    assert "ergon_default v1 2 2200 $0.00075" in page
    assert "(no prompt) 1 1100 $0.013" in page


def test_ledger_filters_by_prompt_version(admin_client: Any, ledger: Any) -> None:
    url = reverse("admin:budget_usagerecord_changelist")

    response = admin_client.get(url, {"prompt_version": ledger.ergon_prompt_version_id})

    assert "Totals of the filtered records: 2 request attempts" in text_of(response)


def test_usage_row_links_to_its_context_and_prompt_version(admin_client: Any, ledger: Any) -> None:
    from budget.models import UsageRecord
    from contexts.services import NewMessage, context_append_messages

    context_append_messages(
        context_id="ergon:default", component="ergon", messages=[NewMessage("user", "hi", tokens=1)]
    )
    row = UsageRecord.objects.filter(prompt_version_id=ledger.ergon_prompt_version_id).first()

    response = admin_client.get(reverse("admin:budget_usagerecord_change", args=[row.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert (
        reverse("admin:prompts_promptversion_change", args=[ledger.ergon_prompt_version_id]) in html
    )
    assert "/admin/contexts/context/" in html
    assert ">ergon:default</a>" in html


def test_context_links_to_its_usage(admin_client: Any, ledger: Any) -> None:
    from contexts.models import Context
    from contexts.services import NewMessage, context_append_messages

    context_append_messages(
        context_id="telos:default", component="telos", messages=[NewMessage("user", "hi", tokens=1)]
    )
    context = Context.objects.get(context_id="telos:default")

    page = admin_client.get(reverse("admin:contexts_context_change", args=[context.pk]))
    link = reverse("admin:budget_usagerecord_changelist") + "?context_id=telos%3Adefault"
    assert link in page.content.decode()
    ledger_page = admin_client.get(link)
    assert "Totals of the filtered records: 1 request attempts" in text_of(ledger_page)


def test_the_ledger_is_read_only(admin_client: Any, ledger: Any) -> None:
    url = reverse("admin:budget_usagerecord_change", args=[ledger.failure.pk])

    response = admin_client.post(url, {"status": "ok"})

    assert response.status_code == 403
    ledger.failure.refresh_from_db()
    assert ledger.failure.status == "error"


def route_form(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "ergon_planning",
        "provider": "openai",
        "model": "gpt-4o",
        "temperature": "0.3",
        "max_tokens": "1500",
        "fallbacks": "anthropic/claude-3-haiku-20240307\nollama/llama3",
        "lower_max_tokens": "on",
        "description": "Ergon plans with GPT-4o",
    }
    data.update(overrides)
    return data


def test_a_route_added_in_the_admin_takes_effect(admin_client: Any) -> None:
    task_routes_seed()

    response = admin_client.post(reverse("admin:llm_taskroute_add"), route_form())

    assert response.status_code == 302, response.content
    route = route_table().lookup(component="ergon", task_type="planning")
    assert route.target == Target("openai", "gpt-4o")
    assert route.fallbacks == (
        Target("anthropic", "claude-3-haiku-20240307"),
        Target("ollama", "llama3"),
    )
    assert (route.temperature, route.max_tokens, route.lower_max_tokens) == (0.3, 1500, True)


def test_an_unknown_model_is_refused_in_the_admin(admin_client: Any) -> None:
    task_routes_seed()

    response = admin_client.post(
        reverse("admin:llm_taskroute_add"), route_form(model="gpt-5-ultra")
    )

    assert response.status_code == 200
    assert "Unknown model &#x27;gpt-5-ultra&#x27; for provider &#x27;openai&#x27;" in (
        response.content.decode()
    )
    assert not TaskRoute.objects.filter(name="ergon_planning").exists()


def test_a_malformed_fallback_chain_is_refused(admin_client: Any) -> None:
    task_routes_seed()

    response = admin_client.post(reverse("admin:llm_taskroute_add"), route_form(fallbacks="gpt-4o"))

    assert "expected provider/model" in response.content.decode()
    assert not TaskRoute.objects.filter(name="ergon_planning").exists()


def test_an_edited_route_shows_its_chain_and_the_default_cannot_be_deleted(
    admin_client: Any,
) -> None:
    task_routes_seed()
    code = TaskRoute.objects.get(name="code")

    response = admin_client.post(
        reverse("admin:llm_taskroute_change", args=[code.pk]),
        route_form(name="code", model="gpt-4-turbo", fallbacks="openai/gpt-4o"),
    )
    assert response.status_code == 302
    listing = admin_client.get(reverse("admin:llm_taskroute_changelist"))
    assert "openai/gpt-4-turbo" in text_of(listing)
    assert route_table().lookup(component=None, task_type="code").fallbacks == (
        Target("openai", "gpt-4o"),
    )

    default = TaskRoute.objects.get(name="default")
    delete = admin_client.post(
        reverse("admin:llm_taskroute_delete", args=[default.pk]), {"post": "yes"}
    )
    assert delete.status_code == 403
    assert TaskRoute.objects.filter(name="default").exists()


def test_the_default_route_says_when_post_provider_overrides_it(admin_client: Any) -> None:
    from llm.services import default_model_set

    task_routes_seed()
    default = TaskRoute.objects.get(name="default")
    url = reverse("admin:llm_taskroute_change", args=[default.pk])
    assert "none: this route&#x27;s model serves" in admin_client.get(url).content.decode()

    default_model_set(provider="simulated", model="simulated-fast")

    page = text_of(admin_client.get(url))
    assert "simulated/simulated-fast: it answers the requests this route would" in page
    # The route table every request reads carries the choice, without a query of its own.
    assert route_table().default_target == Target("simulated", "simulated-fast")


def test_deleting_the_default_model_in_the_admin_reaches_the_route_table(
    admin_client: Any,
) -> None:
    from llm.models import DefaultModel
    from llm.services import default_model_set

    task_routes_seed()
    default_model_set(provider="simulated", model="simulated-fast")
    assert route_table().default_target == Target("simulated", "simulated-fast")
    chosen = DefaultModel.objects.get()

    response = admin_client.post(
        reverse("admin:llm_defaultmodel_delete", args=[chosen.pk]), {"post": "yes"}
    )

    assert response.status_code == 302
    assert not DefaultModel.objects.exists()
    assert route_table().default_target is None


def test_the_ledger_page_costs_the_same_queries_for_more_rows(
    admin_client: Any, ledger: Any
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = reverse("admin:budget_usagerecord_changelist")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(url).status_code == 200
        return len(captured)

    first = queries()
    seed_ledger()  # twice the rows, on one page

    assert queries() == first


def test_every_list_and_detail_page_of_the_console_renders(admin_client: Any, ledger: Any) -> None:
    from django.contrib import admin

    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        listing = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        assert admin_client.get(listing).status_code == 200, listing
        if model_admin.search_fields:
            assert admin_client.get(listing, {"q": "ergon"}).status_code == 200, listing
        first = model.objects.order_by("pk").first()
        if first is not None:
            detail = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[first.pk])
            assert admin_client.get(detail).status_code == 200, detail


@pytest.mark.parametrize(
    ("_case", "model", "attempts"),
    [
        ("family_matches_dated_release", "claude-3-haiku", 13),
        ("exact_id", "claude-3-haiku-20240307", 13),
        ("gpt_4_is_not_gpt_4o", "gpt-4", 0),
        ("gpt_4o", "gpt-4o", 2),
    ],
)
def test_the_ledger_model_filter_matches_price_families(
    admin_client: Any, ledger: Any, _case: str, model: str, attempts: int
) -> None:
    url = reverse("admin:budget_usagerecord_changelist")

    page = text_of(admin_client.get(url, {"model": model}))

    assert f"Totals of the filtered records: {attempts} request attempts" in page

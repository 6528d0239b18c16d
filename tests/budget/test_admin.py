import pytest
from django.contrib.admin.sites import site
from django.urls import reverse

from budget import services
from budget.admin import CappedCountPaginator, UsageRecordAdmin
from budget.models import BudgetLimit, ModelPrice, UsageRecord
from llm.providers.base import Usage


@pytest.fixture
def settled(reserve):
    r = reserve()
    return services.budget_settle(
        reservation_id=r.reservation_id, usage=Usage(1000, 1000), status="ok", latency_ms=1
    )


def test_usage_ledger_admin_is_read_only(rf):
    model_admin = UsageRecordAdmin(UsageRecord, site)
    request = rf.get("/")

    assert model_admin.has_add_permission(request) is False
    assert model_admin.has_change_permission(request) is False
    assert model_admin.has_delete_permission(request) is False
    assert model_admin.show_full_result_count is False
    assert model_admin.date_hierarchy == "created_at"
    assert model_admin.paginator is CappedCountPaginator


@pytest.mark.django_db
def test_ledger_changelist_shows_totals(admin_client, settled):
    response = admin_client.get(reverse("admin:budget_usagerecord_changelist"))

    assert response.status_code == 200
    assert response.context["budget_totals"] == {
        "count": 1,
        "input_tokens": 1000,
        "output_tokens": 1000,
        "cost": "0.0015",
    }
    assert b"Totals of the filtered records" in response.content


@pytest.mark.django_db
def test_ledger_changelist_filters(admin_client, settled):
    url = reverse("admin:budget_usagerecord_changelist")

    response = admin_client.get(url, {"provider": "openai", "window": "daily"})

    assert response.status_code == 200
    assert response.context["budget_totals"]["count"] == 0


@pytest.mark.django_db
def test_capped_paginator_counts_at_most_cap_plus_one(settled):
    paginator = CappedCountPaginator(UsageRecord.objects.all(), 10)
    paginator.CAP = 0

    assert paginator.count == 1


@pytest.mark.django_db
def test_spend_page_draws_svg_charts(admin_client, settled):
    response = admin_client.get(reverse("admin:budget_usagerecord_spend"))

    assert response.status_code == 200
    body = response.content.decode()
    assert body.count('<svg role="img"') == 2  # Django's admin has icon SVGs of its own
    assert "anthropic: $0.0015" in body
    assert "ergon: $0.0015" in body
    assert "<script" not in body.split("content-main", 1)[1]


@pytest.mark.django_db
def test_limit_admin_saves_through_the_service(admin_client):
    response = admin_client.post(
        reverse("admin:budget_budgetlimit_add"),
        {
            "period": "daily",
            "scope_kind": "provider",
            "scope_value": "openai",
            "enforcement": "enforce",
            "limit_usd": "2.5",
        },
    )

    assert response.status_code == 302
    limit = BudgetLimit.objects.get()
    assert (limit.scope, limit.limit_nanos, limit.enforcement) == (
        "provider:openai",
        2_500_000_000,
        "enforce",
    )


@pytest.mark.django_db
def test_price_admin_lists_history_and_locks_charged_prices(admin_client, settled):
    haiku = ModelPrice.objects.get(model="claude-3-haiku")

    listing = admin_client.get(reverse("admin:budget_modelprice_changelist"))
    change = admin_client.get(reverse("admin:budget_modelprice_change", args=[haiku.pk]))

    assert listing.status_code == 200
    assert change.status_code == 200
    assert b'name="input_price"' not in change.content  # read-only once charged


@pytest.mark.django_db
def test_unpriced_models_are_flagged_in_admin(admin_client, reserve):
    reserve(provider="openai", model="gpt-9")

    response = admin_client.get(reverse("admin:budget_unpricedmodel_changelist"))

    assert b"gpt-9" in response.content
    assert b"openai/gpt-4" in response.content


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name",
    ["budgetreset", "spendcounter", "budgetreservation", "budgetlimit", "modelprice"],
)
def test_other_admin_pages_render(admin_client, settled, name):
    response = admin_client.get(reverse(f"admin:budget_{name}_changelist"))

    assert response.status_code == 200

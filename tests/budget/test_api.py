import pytest
from django.test import Client, RequestFactory
from ninja.testing import TestClient

from budget import services
from budget.models import BudgetLimit
from llm.providers.base import Usage
from rhetor_site.api import api


@pytest.fixture
def client() -> TestClient:
    return TestClient(api)


def _spend(reserve, **kw):
    r = reserve(**kw)
    return services.budget_settle(
        reservation_id=r.reservation_id, usage=Usage(1000, 1000), status="ok", latency_ms=3
    )


@pytest.mark.django_db
def test_budget_status_reports_usage_limit_remaining(client, set_limit, reserve):
    set_limit("daily", "0.01", "enforce")
    _spend(reserve)

    response = client.get("/budget")

    assert response.status_code == 200
    body = response.json()
    assert body["daily"] == {
        "usage": "0.0015",
        "limit": "0.01",
        "remaining": "0.0085",
        "policy": "enforce",
        "percentage": 15.0,
        "reserved": "0.00",
        "window_start": body["daily"]["window_start"],
    }
    assert body["weekly"]["limit"] is None
    assert body["weekly"]["remaining"] is None
    assert body["weekly"]["percentage"] is None
    assert body["weekly"]["usage"] == "0.0015"
    assert body["budget_enabled"] is True


@pytest.mark.django_db
def test_set_limit_accepts_camel_case_and_shows_in_settings(client):
    response = client.post(
        "/budget/limit",
        json={
            "period": "weekly",
            "limitAmount": "12.5",
            "provider": "openai",
            "enforcement": "enforce",
        },
    )

    assert response.status_code == 200
    assert response.json()["limit_amount"] == "12.50"
    settings_body = client.get("/budget/settings").json()
    weekly = [s for s in settings_body["weekly"] if s["provider"] == "openai"]
    assert weekly == [
        {
            "id": BudgetLimit.objects.get().pk,
            "provider": "openai",
            "component": None,
            "scope": "provider:openai",
            "limit_amount": "12.50",
            "enforcement": "enforce",
            "start_date": weekly[0]["start_date"],
        }
    ]
    # The env default for scope "all" is listed too (no limit, default policy).
    assert [s["scope"] for s in settings_body["daily"]] == ["all"]


@pytest.mark.django_db
def test_set_limit_rejects_bad_period_naming_field_and_allowed_values(client):
    response = client.post("/budget/limit", json={"period": "hourly", "limit_amount": "5"})

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["fields"][0]["field"] == "period"
    assert "'daily', 'weekly' or 'monthly'" in body["fields"][0]["message"]
    assert BudgetLimit.objects.exists() is False


@pytest.mark.django_db
def test_set_limit_rejects_sub_nano_amount(client):
    response = client.post(
        "/budget/limit", json={"period": "daily", "limit_amount": "0.0000000001"}
    )

    assert response.status_code == 422
    assert response.json()["field"] == "limit_amount"
    assert BudgetLimit.objects.exists() is False


@pytest.mark.django_db
def test_set_limit_rejects_negative_amount(client):
    response = client.post("/budget/limit", json={"period": "daily", "limit_amount": "-1"})

    assert response.status_code == 422
    assert BudgetLimit.objects.exists() is False


@pytest.mark.django_db
def test_set_policy_names_allowed_values(client):
    bad = client.post("/budget/policy", json={"period": "daily", "policy": "block"})
    good = client.post("/budget/policy", json={"period": "daily", "policy": "enforce"})

    assert bad.status_code == 422
    assert "'ignore', 'warn' or 'enforce'" in bad.json()["error"]
    assert good.status_code == 200
    assert BudgetLimit.objects.get().enforcement == "enforce"


@pytest.mark.django_db
def test_policy_for_new_all_scope_starts_from_env_limit(client, settings):
    settings.RHETOR_BUDGET_MONTHLY_LIMIT = "30"

    response = client.post("/budget/policy", json={"period": "monthly", "policy": "enforce"})

    assert response.json()["limit_amount"] == "30.00"


@pytest.mark.django_db
def test_usage_lists_records_of_the_period(client, reserve):
    _spend(reserve)
    _spend(reserve, provider="openai", model="gpt-3.5-turbo", component="athena")

    response = client.get("/budget/usage?period=daily&provider=openai")

    body = response.json()
    assert (body["period"], body["provider"], body["count"]) == ("daily", "openai", 1)
    row = body["usage"][0]
    assert (row["provider"], row["model"], row["component"]) == (
        "openai",
        "gpt-3.5-turbo",
        "athena",
    )
    assert (row["input_tokens"], row["output_tokens"], row["cost"]) == (1000, 1000, "0.002")
    assert row["metadata"]["status"] == "ok"
    assert row["timestamp"].endswith("Z")


@pytest.mark.django_db
def test_usage_rejects_bad_status(client):
    response = client.get("/budget/usage?status=finished")

    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "status"


@pytest.mark.django_db
def test_summary_groups_by_component(client, reserve):
    _spend(reserve)
    _spend(reserve)
    _spend(reserve, component="athena")

    response = client.get("/budget/summary?period=monthly&groupBy=component")

    body = response.json()
    assert body == {
        "period": "monthly",
        "group_by": "component",
        "total_cost": "0.0045",
        "total_input_tokens": 3000,
        "total_output_tokens": 3000,
        "total_tokens": 6000,
        "count": 3,
        "groups": {
            "athena": {"cost": "0.0015", "input_tokens": 1000, "output_tokens": 1000, "count": 1},
            "ergon": {"cost": "0.003", "input_tokens": 2000, "output_tokens": 2000, "count": 2},
        },
    }


@pytest.mark.django_db
def test_summary_rejects_bad_group_by(client):
    response = client.get("/budget/summary?group_by=colour")

    assert response.status_code == 422
    assert "provider" in response.json()["error"]


@pytest.mark.django_db
def test_model_tiers_follow_the_contract(client):
    body = client.get("/budget/model-tiers").json()

    def names(tier):
        return [(e["provider"], e["model"]) for e in body[tier]]

    assert names("free") == [("ollama", "*"), ("simulated", "*")]
    assert names("low") == [("anthropic", "claude-3-haiku"), ("openai", "gpt-3.5-turbo")]
    assert names("medium") == [
        ("anthropic", "claude-3-5-sonnet"),
        ("anthropic", "claude-3-sonnet"),
        ("openai", "gpt-4-turbo"),
        ("openai", "gpt-4o"),
    ]
    assert names("high") == [("anthropic", "claude-3-opus"), ("openai", "gpt-4")]
    assert body["low"][0]["cost_per_1k_tokens"] == "0.0015"
    assert body["high"][0]["cost_per_1k_tokens"] == "0.09"


@pytest.mark.django_db
def test_budget_exceeded_maps_to_402_through_the_site(set_limit, reserve):
    # The service error reaches clients through the one site-wide handler.
    from budget.errors import BudgetExceeded
    from rhetor_site.api import rhetor_error

    set_limit("daily", "0", "enforce")
    with pytest.raises(BudgetExceeded) as exc_info:
        reserve()

    response = rhetor_error(RequestFactory().post("/message"), exc_info.value)
    assert response.status_code == 402
    assert b'"code": "budget_exceeded"' in response.content


@pytest.mark.django_db
def test_smoke_through_urls():
    response = Client().get("/budget/model-tiers")

    assert response.status_code == 200

import io

import pytest
from django.core.management import CommandError, call_command

from budget import services
from budget.models import BudgetReset, ModelPrice, UsageRecord
from budget.selectors import budget_status
from llm.providers.base import Usage


def _spend(reserve, **kw):
    r = reserve(**kw)
    services.budget_settle(
        reservation_id=r.reservation_id, usage=Usage(1000, 1000), status="ok", latency_ms=1
    )


@pytest.mark.django_db
def test_budget_reset_records_audit_row_and_keeps_usage(reserve):
    _spend(reserve)
    out = io.StringIO()

    call_command("budget_reset", "--period", "daily", "--note", "incident", stdout=out)

    assert "$0.0015 no longer counts" in out.getvalue()
    reset = BudgetReset.objects.get()
    assert (reset.period, reset.scope_kind, reset.note) == ("daily", "all", "incident")
    assert UsageRecord.objects.count() == 1
    assert budget_status().daily.usage_nanos == 0
    assert budget_status().weekly.usage_nanos == 1_500_000


@pytest.mark.django_db
def test_budget_reset_for_one_component(reserve):
    _spend(reserve)

    call_command(
        "budget_reset", "--period", "monthly", "--scope", "component:ergon", stdout=io.StringIO()
    )

    reset = BudgetReset.objects.get()
    assert (reset.scope_kind, reset.scope_value, reset.spent_nanos) == (
        "component",
        "ergon",
        1_500_000,
    )


@pytest.mark.django_db
def test_budget_reset_refuses_bad_scope():
    with pytest.raises(CommandError):
        call_command("budget_reset", "--period", "daily", "--scope", "team:x", stdout=io.StringIO())

    assert BudgetReset.objects.exists() is False


@pytest.mark.django_db
def test_budget_report_prints_a_table(reserve):
    _spend(reserve)
    _spend(reserve, provider="openai", model="gpt-3.5-turbo")
    out = io.StringIO()

    call_command("budget_report", "--period", "daily", "--group-by", "provider", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[1].split() == [
        "provider",
        "requests",
        "input",
        "tokens",
        "output",
        "tokens",
        "cost",
        "(USD)",
    ]
    assert lines[3].split() == ["openai", "1", "1000", "1000", "0.002"]
    assert lines[4].split() == ["anthropic", "1", "1000", "1000", "0.0015"]
    assert lines[-1].split() == ["TOTAL", "2", "2000", "2000", "0.0035"]


@pytest.mark.django_db
def test_set_price_adds_a_dated_price():
    out = io.StringIO()

    call_command(
        "set_price",
        "openai",
        "gpt-4o-mini",
        "--input",
        "0.15",
        "--output",
        "0.6",
        "--per",
        "1m",
        "--from",
        "2026-01-01",
        "--source",
        "vendor page",
        stdout=out,
    )

    price = ModelPrice.objects.get(model="gpt-4o-mini")
    assert (price.input_price, price.output_price, price.source) == (150, 600, "vendor page")
    assert price.effective_from.isoformat() == "2026-01-01T00:00:00+00:00"
    assert "openai/gpt-4o-mini" in out.getvalue()


@pytest.mark.django_db
def test_set_price_refuses_sub_nano_price():
    with pytest.raises(CommandError):
        call_command(
            "set_price",
            "openai",
            "x",
            "--input",
            "0.0000000001",
            "--output",
            "0",
            stdout=io.StringIO(),
        )

    assert ModelPrice.objects.filter(model="x").exists() is False


@pytest.mark.django_db
def test_release_reservations_command_with_nothing_stale(reserve):
    reserve()
    out = io.StringIO()

    call_command("release_reservations", "--older-than", "60", stdout=out)

    assert out.getvalue().strip() == "Released 0 stale budget hold(s)."

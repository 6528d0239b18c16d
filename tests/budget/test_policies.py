import pytest

from budget import policies
from budget.policies import AmountError, nanos_from_usd, usd


@pytest.mark.parametrize(
    ("_case", "nanos", "text"),
    [
        ("zero", 0, "0.00"),
        ("dollars", 5 * 10**9, "5.00"),
        ("contract_example", 40_500, "0.0000405"),
        ("one_nano", 1, "0.000000001"),
        ("cents", 12_340_000_000, "12.34"),
    ],
)
def test_usd_is_exact(_case, nanos, text):
    assert usd(nanos) == text


def test_usd_rounds_half_up_when_asked():
    assert usd(40_500, places=6) == "0.000041"


@pytest.mark.parametrize(
    ("_case", "text", "nanos"),
    [("int", "5", 5 * 10**9), ("fraction", "0.25", 250_000_000), ("nano", "0.000000001", 1)],
)
def test_nanos_from_usd(_case, text, nanos):
    assert nanos_from_usd(text) == nanos


@pytest.mark.parametrize("text", ["abc", "-1", "0.0000000001", "NaN", "inf"])
def test_nanos_from_usd_refuses(text):
    with pytest.raises(AmountError):
        nanos_from_usd(text)


@pytest.mark.parametrize(
    ("_case", "input_price", "output_price", "tier"),
    [
        ("free", 0, 0, "free"),
        ("haiku_low", 250, 1250, "low"),
        ("just_below_one_cent", 4_999, 4_999, "low"),
        ("one_cent_is_medium", 5_000, 5_000, "medium"),
        ("five_cents_is_medium", 25_000, 25_000, "medium"),
        ("above_five_cents_high", 25_000, 25_001, "high"),
        ("opus_high", 15_000, 75_000, "high"),
    ],
)
def test_tiers_by_cost_per_1k_tokens(_case, input_price, output_price, tier):
    assert policies.tier_for(input_price=input_price, output_price=output_price) == tier


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("claude-3-opus-20240229", "claude-3-opus"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("gpt-4-turbo", "gpt-4-turbo"),
    ],
)
def test_model_family(model, family):
    assert policies.model_family(model) == family


def test_no_warning_below_80_percent():
    use = policies.LimitUse(period="daily", scope="all", limit=100, used_before=50, needed=29)

    assert policies.warnings_for(use) == []


def test_affordable_output_tokens():
    assert (
        policies.affordable_output_tokens(
            remaining=1_000_000, input_tokens=1000, input_price=250, output_price=1250
        )
        == 600
    )
    assert (
        policies.affordable_output_tokens(
            remaining=100, input_tokens=1000, input_price=250, output_price=1250
        )
        == 0
    )


def test_seed_migration_matches_the_seed_table():
    import importlib

    from budget.prices import SEED_PRICES, SEED_SOURCE

    migration = importlib.import_module("budget.migrations.0002_seed_prices")
    assert tuple(migration.PRICES) == SEED_PRICES
    assert migration.SOURCE == SEED_SOURCE


def test_settings_check_flags_bad_budget_env(settings):
    from budget.apps import check_budget_settings

    settings.RHETOR_BUDGET_POLICY = "block"
    settings.RHETOR_BUDGET_DAILY_LIMIT = "five"
    settings.RHETOR_TIMEZONE = "Mars/Olympus"

    assert [e.id for e in check_budget_settings()] == ["budget.E001", "budget.E002", "budget.E003"]


def test_settings_check_passes_on_defaults():
    from budget.apps import check_budget_settings

    assert check_budget_settings() == []

"""The operator console's flows in a real browser (headless Chromium), against the live
server: the dashboard over a seeded ledger, a prompt edited / compared / activated / rolled
back, a daily limit and policy set, a failed request found from the dashboard, and a task
route edited and then answering /message. Each flow saves a screenshot
(test-output/browser/, or $RHETOR_TEST_OUTPUT_DIR/browser/)."""

import re
from typing import Any

import pytest

from budget.models import BudgetLimit
from llm.route_table import task_routes_seed
from prompts.models import Prompt
from tests.browser.conftest import outside_browser_loop
from tests.llm.ledger import FAILURE, seed_ledger

pytestmark = pytest.mark.browser
expect = pytest.importorskip("playwright.sync_api").expect


@pytest.fixture
def budget_env(settings: Any) -> Any:
    settings.RHETOR_TIMEZONE = "UTC"
    settings.RHETOR_BUDGET_POLICY = "warn"
    settings.RHETOR_BUDGET_DAILY_LIMIT = ""
    settings.RHETOR_BUDGET_WEEKLY_LIMIT = ""
    settings.RHETOR_BUDGET_MONTHLY_LIMIT = ""
    return settings


@pytest.fixture
def ledger(budget_env: Any) -> Any:
    return seed_ledger()


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_dashboard_shows_the_seeded_ledger(ledger, admin_page, live_server, screenshot) -> None:
    page = admin_page
    page.goto(f"{live_server.url}/admin/")

    assert page.locator("#site-name").inner_text() == "Rhetor operator console"
    daily = squash(page.locator("#spend-daily").inner_text())
    assert "$0.00375 (no limit)" in daily  # 10 haiku attempts today at $0.000375
    models = page.locator("#model-stats tbody tr")
    assert squash(models.nth(0).inner_text()) == (
        "anthropic claude-3-haiku-20240307 10 0 0.0% 500 ms 1000 ms $0.00375"
    )
    assert squash(models.nth(1).inner_text()) == "openai gpt-4o 1 1 100.0% - - $0.00"
    yesterday = squash(page.locator("#yesterday-components").inner_text())
    assert "ergon 3 $0.01375" in yesterday
    assert "telos 1 $0.000375" in yesterday
    assert page.locator("#daily-spend-chart rect").count() >= 2  # yesterday's and today's bars
    assert "simulated available" in squash(page.locator("#provider-availability").inner_text())
    screenshot(page, "dashboard")

    # "What did Ergon spend yesterday, on which models, and which prompt version?"
    page.click("#yesterday-components >> text=ergon")
    expect(page.locator(".budget-totals")).to_be_visible()
    totals = squash(page.locator(".budget-totals").inner_text())
    assert "3 request attempts" in totals
    assert "$0.01375" in totals
    by_model = squash(page.locator('[data-breakdown="by-model"]').inner_text())
    assert "claude-3-haiku-20240307 2 2200 $0.00075" in by_model
    assert "gpt-4o 1 1100 $0.013" in by_model
    by_prompt = squash(page.locator('[data-breakdown="by-prompt-version"]').inner_text())
    assert "ergon_default v1 2 2200 $0.00075" in by_prompt
    screenshot(page, "ergon-yesterday")


def test_find_a_failed_request_from_the_dashboard(
    ledger, admin_page, live_server, screenshot
) -> None:
    page = admin_page
    page.goto(f"{live_server.url}/admin/")
    failed = page.locator("#failed-requests tbody tr").first
    assert FAILURE in failed.inner_text()
    assert "openai/gpt-4o" in failed.inner_text()

    failed.locator("a").click()
    page.wait_for_url(f"**/admin/budget/usagerecord/{ledger.failure.pk}/change/")

    assert page.url.endswith(f"/admin/budget/usagerecord/{ledger.failure.pk}/change/")
    detail = squash(page.locator("#content-main").inner_text())
    assert FAILURE in detail
    assert "Error" in detail
    assert "ergon:default" in detail
    screenshot(page, "failed-request")


def test_set_a_daily_limit_and_policy(budget_env, admin_page, live_server, screenshot) -> None:
    page = admin_page
    page.goto(f"{live_server.url}/admin/budget/budgetlimit/add/")
    page.select_option("#id_period", "daily")
    page.select_option("#id_scope_kind", "all")
    page.fill("#id_limit_usd", "2.5")
    page.select_option("#id_enforcement", "enforce")
    page.click("input[name=_save]")

    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    row = page.locator("#result_list tbody tr").first
    assert squash(row.inner_text()).startswith("Daily all 2.50")
    assert row.locator("select").input_value() == "enforce"  # the list's editable policy
    budget = page.request.get(f"{live_server.url}/budget").json()
    assert budget["daily"]["limit"] == "2.50"
    assert budget["daily"]["policy"] == "enforce"
    page.goto(f"{live_server.url}/admin/")
    daily = page.locator("#spend-daily")
    assert daily.get_attribute("data-level") == "ok"
    assert "enforce" in daily.inner_text()
    screenshot(page, "daily-limit")
    with outside_browser_loop():
        limit = BudgetLimit.objects.get(period="daily", scope_kind="all")
        assert (limit.limit_nanos, limit.enforcement) == (2_500_000_000, "enforce")


def test_edit_a_prompt_compare_activate_and_roll_back(admin_page, live_server, screenshot) -> None:
    page = admin_page
    page.goto(f"{live_server.url}/admin/prompts/prompt/?q=ergon_default")
    page.click("#result_list >> text=ergon_default")
    content = page.locator("#id_content")
    original = content.input_value()
    content.fill(original + "\nAlways end with a one-line summary.")
    page.fill("#id_change_note", "ask for a summary line")
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    assert "Editing creates version 3; version 2 is the latest." in page.content()

    page.click("text=Compare versions")
    expect(page.locator("pre.rhetor-diff")).to_be_visible()
    added = page.locator("pre.rhetor-diff span.add")
    assert "+Always end with a one-line summary." in [s.strip() for s in added.all_inner_texts()]
    screenshot(page, "prompt-diff")

    page.click("input[value='Make v2 active']")
    expect(page.locator(".messagelist")).to_contain_text(
        "Version 2 of ergon_default is now active."
    )
    with outside_browser_loop():
        assert Prompt.objects.get(slug="ergon_default").active_version.version == 2

    page.click("button[name=_rollback]")
    expect(page.locator(".messagelist")).to_contain_text("Rolled back ergon_default to version 1.")
    screenshot(page, "prompt-rolled-back")
    with outside_browser_loop():
        assert Prompt.objects.get(slug="ergon_default").active_version.version == 1


def test_edit_a_task_route_and_see_it_answer(admin_page, live_server, screenshot) -> None:
    page = admin_page
    body = {"message": "Hello", "context_id": "ergon:route", "task_type": "chat"}
    before = page.request.post(f"{live_server.url}/message", data=body)
    assert before.status == 200, before.text()
    assert before.json()["model"] == "simulated-standard"

    page.goto(f"{live_server.url}/admin/llm/taskroute/")
    assert "anthropic/claude-3-haiku-20240307" in page.locator("#result_list").inner_text()
    page.click("#result_list >> text=chat")
    page.select_option("#id_provider", "simulated")
    page.fill("#id_model", "simulated-nonexistent")
    page.click("input[name=_save]")
    expect(page.locator(".errorlist").first).to_contain_text(
        "Unknown model 'simulated-nonexistent' for provider 'simulated'"
    )
    screenshot(page, "task-route-refused")

    page.fill("#id_model", "simulated-fast")
    page.fill("#id_fallbacks", "simulated/simulated-standard")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    row = squash(page.locator("#result_list tr", has_text="chat").first.inner_text())
    assert "simulated/simulated-fast" in row
    screenshot(page, "task-route-edited")

    after = page.request.post(f"{live_server.url}/message", data=body)
    assert after.status == 200, after.text()
    assert after.json()["model"] == "simulated-fast"


@pytest.fixture(autouse=True)
def _routes_seeded_before_the_browser(request: pytest.FixtureRequest) -> None:
    """The route tests read the seeded table (seeding is a write: done before the browser)."""
    if "task_route" in request.node.name:
        request.getfixturevalue("transactional_db")
        task_routes_seed()

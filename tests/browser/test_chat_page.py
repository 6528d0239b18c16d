"""The chat page (`/ui/`) in a real browser: two `manage.py serve` processes on one Redis
and one SQLite file; page A on worker 1 chats with the simulated provider and watches the
reply stream in; page B on worker 2, subscribed to the same context, sees the
conversation appear live."""

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import ROOT, serve, stop_server

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def two_workers(tmp_path: Path, redis_url: str) -> Iterator[tuple[str, str]]:
    # Slow enough that the stream and the typing indicator are observable.
    shared = {"REDIS_URL": redis_url, "RHETOR_SIMULATED_DELAY": "0.03"}
    first = serve(tmp_path, shared)
    try:
        second = serve(tmp_path, shared)
    except BaseException:
        stop_server(first[1])
        raise
    yield first[0], second[0]
    stop_server(first[1])
    stop_server(second[1])


def open_chat(browser: Any, url: str, context: str) -> Any:
    page = browser.new_page()
    page.goto(f"{url}/ui/?context={context}")
    page.wait_for_selector(f'#subscription[data-subscribed="true"][data-context="{context}"]')
    return page


def messages(page: Any) -> list[tuple[str, str]]:
    rows = page.eval_on_selector_all(
        "#messages .message",
        "els => els.map(e => [e.dataset.role, e.querySelector('.text').textContent])",
    )
    return [(role, text) for role, text in rows if role in ("user", "assistant")]


def test_a_second_page_on_another_worker_sees_the_chat_live(
    browser: Any, two_workers: tuple[str, str], screenshot: Any
) -> None:
    url_a, url_b = two_workers
    context = f"hephaestus:ui-{uuid.uuid4().hex[:8]}"
    page_a = open_chat(browser, url_a, context)
    page_b = open_chat(browser, url_b, context)

    page_a.fill("#prompt", "Tell me about the Tekton architecture")
    page_a.click("#send")
    page_a.wait_for_selector("#typing:not([hidden])")
    page_a.wait_for_selector('.message[data-role="assistant"][data-state="done"]')
    page_a.wait_for_selector("#typing", state="hidden")
    reply = page_a.locator('.message[data-role="assistant"] .text').inner_text()
    chunks = int(page_a.get_attribute('.message[data-role="assistant"]', "data-chunks") or 0)
    page_b.wait_for_selector('.message[data-role="assistant"][data-seq="1"]')
    screenshot(page_a, "chat-page-a-worker-1")
    screenshot(page_b, "chat-page-b-worker-2")
    stored = httpx.get(f"{url_b}/contexts/{context}", timeout=5).json()

    assert chunks > 1
    assert reply
    expected = [("user", "Tell me about the Tekton architecture"), ("assistant", reply)]
    assert messages(page_a) == expected
    assert messages(page_b) == expected
    assert page_a.get_attribute('.message[data-role="assistant"]', "data-seq") == "1"
    assert [(m["role"], m["content"]) for m in stored["messages"]] == expected
    registered = page_a.locator('.message[data-role="system"]').first.inner_text()
    assert "Client registered successfully with Rhetor LLM Manager" in registered
    assert page_b.locator('.message[data-role="error"]').count() == 0


def test_the_page_shows_error_frames_and_non_streaming_replies_once(
    browser: Any, two_workers: tuple[str, str], screenshot: Any
) -> None:
    url_a, url_b = two_workers
    context = f"hephaestus:ui-{uuid.uuid4().hex[:8]}"
    page = open_chat(browser, url_a, context)
    watcher = open_chat(browser, url_b, context)

    page.evaluate("ctx => window.rhetorUI.send('NO_SUCH_TYPE', {context: ctx})", context)
    error = page.wait_for_selector('.message[data-role="error"] .text').inner_text()
    page.uncheck("#streaming")
    page.fill("#prompt", "Answer in one go")
    page.press("#prompt", "Enter")
    page.wait_for_selector('.message[data-role="assistant"][data-state="done"]')
    watcher.wait_for_selector('.message[data-role="assistant"]')
    page.wait_for_timeout(300)  # any duplicate from the subscription would have landed
    screenshot(page, "chat-page-errors-and-non-streaming")

    first_exchange = messages(page)
    page.check("#chat-mode")
    page.check("#streaming")
    page.fill("#prompt", "And now the whole chat")
    page.click("#send")
    page.wait_for_selector('.message[data-role="assistant"][data-state="done"] >> nth=1')
    watcher.wait_for_selector('.message[data-role="assistant"] >> nth=1')

    assert error.startswith("Error: Unknown message type 'NO_SUCH_TYPE'")
    assert [role for role, _ in first_exchange] == ["user", "assistant"]
    assert "I can see 3 messages" in messages(page)[-1][1]  # CHAT_REQUEST sent them all
    assert [role for role, _ in messages(page)] == ["user", "assistant"] * 2
    assert messages(watcher) == messages(page)


def test_an_operator_page_on_one_worker_sees_budget_warnings_from_another(
    browser: Any, two_workers: tuple[str, str], tmp_path: Path, screenshot: Any
) -> None:
    url_a, url_b = two_workers
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "rhetor_site.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'rhetor.sqlite3'}",
    }
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "set_price",
            "simulated",
            "simulated-standard",
            "--input",
            "0.000001",
            "--output",
            "0.000001",
            "--source",
            "test",
        ],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    limit = httpx.post(
        f"{url_a}/budget/limit",
        json={"period": "daily", "limit_amount": "0.000001", "enforcement": "warn"},
        timeout=5,
    )
    assert limit.status_code == 200, limit.text
    context = f"hephaestus:ui-{uuid.uuid4().hex[:8]}"
    operator = browser.new_page()
    operator.goto(f"{url_b}/ui/?context=ops:watch&budget=1")
    operator.wait_for_selector('#subscription[data-subscribed="true"]')
    user = open_chat(browser, url_a, context)

    user.fill("#prompt", "An expensive question")
    user.click("#send")
    alert = operator.wait_for_selector('.alert[data-type="BUDGET_WARNING"]').inner_text()
    user.wait_for_selector('.message[data-role="assistant"][data-state="done"]')
    note = user.wait_for_selector('.message[data-role="system"] >> text=Budget:').inner_text()
    screenshot(operator, "chat-page-operator-budget-warning")

    assert f"Budget warning ({context})" in alert
    assert "daily budget for all providers crossed" in alert
    assert "daily budget for all providers crossed" in note

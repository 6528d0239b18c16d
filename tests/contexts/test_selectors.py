"""Selectors: the request history bundle and the model windows."""

from typing import Any

import pytest
from django.test import TestCase

from contexts import selectors
from contexts.models import ContextSummary, ModelContextWindow
from contexts.selectors import (
    EMPTY_HISTORY,
    HistoryMessage,
    acontext_window_for,
    context_history_for_request,
    context_window_clear_cache,
    context_window_for,
)
from contexts.services import context_archive_overflow
from tests.contexts.conftest import add_turns, conversation


@pytest.fixture(autouse=True)
def _fresh_window_cache() -> None:
    context_window_clear_cache()


def test_history_of_an_unknown_context_is_empty_in_one_query(
    db: None, django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(1):
        bundle = context_history_for_request(context_id="nobody:here")

    assert bundle == EMPTY_HISTORY


def test_history_has_active_messages_oldest_first_and_the_latest_summary_in_two_queries(
    db: None, django_assert_num_queries: Any
) -> None:
    add_turns("ergon:a", conversation(6), tokens=50)
    batch = context_archive_overflow(context_id="ergon:a", keep_tokens=3 * 54, low_water=1.0)
    assert batch is not None

    with django_assert_num_queries(2):
        bundle = context_history_for_request(context_id="ergon:a")

    assert [m.seq for m in bundle.messages] == [4, 5]
    assert bundle.messages[0] == HistoryMessage(
        seq=4, role="user", content=conversation(6)[4][1], tokens=50
    )
    summary = ContextSummary.objects.get()
    assert bundle.summary == summary.content
    assert bundle.summary_tokens == summary.tokens


@pytest.mark.parametrize(
    ("_case", "provider", "model", "expected"),
    [
        ("seeded", "anthropic", "claude-3-haiku-20240307", 200000),
        ("seeded small", "openai", "gpt-4", 8192),
        ("ollama tag of a seeded family", "ollama", "mistral:7b", 32768),
        ("unknown model of a known provider", "openai", "gpt-unknown", 8192),
        ("unknown provider", "nobody", "nothing", 8192),
    ],
)
def test_context_window_for(_case: str, provider: str, model: str, expected: int, db: None) -> None:
    assert context_window_for(provider=provider, model=model) == expected


def test_an_operator_edit_is_used_once_the_cache_expires(
    db: None, django_assert_num_queries: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert context_window_for(provider="simulated", model="simulated-fast") == 8192
    ModelContextWindow.objects.filter(model="simulated-fast").update(context_window=4000)

    with django_assert_num_queries(0):
        assert context_window_for(provider="simulated", model="simulated-fast") == 8192
    monkeypatch.setattr(selectors, "WINDOW_CACHE_TTL", -1.0)
    context_window_clear_cache()

    assert context_window_for(provider="simulated", model="simulated-fast") == 4000


class AsyncWindowTests(TestCase):
    async def test_async_twin_reads_the_table(self) -> None:
        context_window_clear_cache()
        await ModelContextWindow.objects.filter(model="gpt-4o").aupdate(context_window=64000)

        window = await acontext_window_for(provider="openai", model="gpt-4o")

        assert window == 64000

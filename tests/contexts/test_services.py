"""Services: appending, real token counts, compaction (archive + summary), deletion."""

import asyncio
from typing import Any

import pytest
from django.test import TestCase, override_settings

from contexts.errors import ContextNotFound
from contexts.models import Context, ContextSummary, Message
from contexts.services import (
    acontext_compact,
    context_archive_overflow,
    context_delete,
    context_message_tokens_set,
)
from contexts.summaries import EXTRACTIVE_HEADER
from llm.providers import reset_providers
from rhetor_site.tokens import MESSAGE_OVERHEAD
from tests.contexts.conftest import add_turns, conversation
from tests.fakes import FakeUpstream

PER_TURN = 50 + MESSAGE_OVERHEAD


def test_append_counts_tokens_and_keeps_the_active_total(db: None) -> None:
    add_turns("ergon:t", [("user", "Hello world, this is a test of tokenization.")])
    add_turns("ergon:t", [("assistant", "ok")], tokens=7)

    rows = list(Message.objects.values_list("seq", "tokens", "token_source"))
    assert rows == [(0, 11, "estimate"), (1, 7, "estimate")]
    assert Context.objects.get().token_count == 18


def test_real_token_count_replaces_the_estimate(db: None) -> None:
    add_turns("ergon:t", [("user", "Hello world, this is a test of tokenization.")])

    assert context_message_tokens_set(context_id="ergon:t", seq=0, tokens=13) is True

    message = Message.objects.get()
    assert (message.tokens, message.token_source) == (13, "provider")
    assert Context.objects.get().token_count == 13


def test_real_token_count_of_an_unknown_message_changes_nothing(db: None) -> None:
    add_turns("ergon:t", [("user", "hi")])

    assert context_message_tokens_set(context_id="ergon:t", seq=5, tokens=13) is False
    assert context_message_tokens_set(context_id="nobody", seq=0, tokens=13) is False

    assert Message.objects.get().token_source == "estimate"
    assert Context.objects.get().token_count == 1


def test_archive_overflow_archives_the_oldest_turns_down_to_the_low_water_mark(db: None) -> None:
    add_turns("ergon:a", conversation(10), tokens=50)

    batch = context_archive_overflow(context_id="ergon:a", keep_tokens=8 * PER_TURN, low_water=0.5)

    assert batch is not None
    assert (batch.first_seq, batch.last_seq) == (0, 5)
    archived = list(Message.objects.filter(archived=True).values_list("seq", flat=True))
    assert archived == [0, 1, 2, 3, 4, 5]
    summary = ContextSummary.objects.get()
    assert (summary.kind, summary.source, summary.first_seq, summary.last_seq) == (
        "archive",
        "extractive",
        0,
        5,
    )
    assert summary.message_count == 6
    assert summary.content.startswith(EXTRACTIVE_HEADER)
    assert "- user: turn 0 word0x0" in summary.content
    assert Message.objects.filter(archive=summary).count() == 6
    context = Context.objects.get()
    assert context.archived_message_count == 6
    assert context.token_count == 4 * 50
    assert context.summary_count == 1
    assert context.latest_summary_id == summary.pk


def test_archive_overflow_within_the_budget_archives_nothing(db: None) -> None:
    add_turns("ergon:a", conversation(4), tokens=50)

    assert context_archive_overflow(context_id="ergon:a", keep_tokens=4 * PER_TURN) is None

    assert Message.objects.filter(archived=True).exists() is False
    assert ContextSummary.objects.exists() is False


def test_archive_overflow_of_an_unknown_context_creates_nothing(db: None) -> None:
    assert context_archive_overflow(context_id="nobody", keep_tokens=0) is None
    assert Context.objects.exists() is False


def test_the_kept_history_starts_with_a_user_turn(db: None) -> None:
    add_turns("ergon:a", conversation(6), tokens=50)

    # 3 turns would fit, but the oldest of them is an assistant turn: it is archived too.
    context_archive_overflow(context_id="ergon:a", keep_tokens=3 * PER_TURN, low_water=1.0)

    active = list(Message.objects.filter(archived=False).values_list("seq", "role"))
    assert active == [(4, "user"), (5, "assistant")]


def test_system_messages_are_never_archived(db: None) -> None:
    add_turns("ergon:a", [("system", "Be brief."), *conversation(6)], tokens=50)

    context_archive_overflow(context_id="ergon:a", keep_tokens=2 * PER_TURN, low_water=1.0)

    active = list(Message.objects.filter(archived=False).values_list("seq", "role"))
    assert active == [(0, "system"), (5, "user"), (6, "assistant")]


def test_a_second_batch_rolls_the_first_summary_forward(db: None) -> None:
    add_turns("ergon:a", conversation(6), tokens=50)
    first = context_archive_overflow(context_id="ergon:a", keep_tokens=2 * PER_TURN, low_water=1.0)
    add_turns("ergon:a", conversation(4), tokens=50)

    second = context_archive_overflow(context_id="ergon:a", keep_tokens=2 * PER_TURN, low_water=1.0)

    assert first is not None
    assert second is not None
    assert (second.first_seq, second.last_seq) == (4, 7)
    latest = ContextSummary.objects.get(pk=second.summary_pk)
    assert "Earlier: - user: turn 0" in latest.content
    assert Context.objects.get().latest_summary_id == latest.pk
    assert Context.objects.get().summary_count == 2


def test_delete_removes_the_context_its_messages_and_summaries(db: None) -> None:
    add_turns("ergon:a", conversation(6), tokens=50)
    context_archive_overflow(context_id="ergon:a", keep_tokens=2 * PER_TURN)
    add_turns("other", [("user", "stay")])

    context_delete(context_id="ergon:a")

    assert list(Context.objects.values_list("context_id", flat=True)) == ["other"]
    assert Message.objects.count() == 1
    assert ContextSummary.objects.exists() is False


def test_delete_of_an_unknown_context_raises(db: None) -> None:
    add_turns("other", [("user", "stay")])

    with pytest.raises(ContextNotFound):
        context_delete(context_id="nobody")

    assert Message.objects.count() == 1


class CompactTests(TestCase):
    async def test_compact_without_a_summariser_keeps_the_extractive_summary(self) -> None:
        from asgiref.sync import sync_to_async

        await sync_to_async(add_turns)("ergon:c", conversation(10), tokens=50)

        summary = await acontext_compact(context_id="ergon:c", keep_tokens=4 * PER_TURN)

        assert summary is not None
        assert summary.source == "extractive"
        assert (summary.first_seq, summary.last_seq) == (0, 7)
        assert await Message.objects.filter(archived=False).acount() == 2

    async def test_concurrent_compactions_archive_each_turn_once(self) -> None:
        from asgiref.sync import sync_to_async

        await sync_to_async(add_turns)("ergon:c", conversation(10), tokens=50)

        results = await asyncio.gather(
            *[acontext_compact(context_id="ergon:c", keep_tokens=4 * PER_TURN) for _ in range(4)]
        )

        assert sum(1 for r in results if r is not None) == 1
        assert await ContextSummary.objects.acount() == 1
        context = await Context.objects.aget()
        assert context.archived_message_count == 8
        assert await Message.objects.filter(archived=True).acount() == 8


class ModelSummaryTests(TestCase):
    upstream: Any

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.upstream = FakeUpstream().start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.upstream.stop()
        super().tearDownClass()

    def setUp(self) -> None:
        self.upstream.reset()

    async def _with_anthropic(self) -> Any:
        settings = override_settings(
            RHETOR_PROVIDERS=["anthropic", "simulated"],
            ANTHROPIC_API_KEY="test-key",
            ANTHROPIC_BASE_URL=self.upstream.url,
        )
        settings.enable()
        self.addCleanup(settings.disable)
        await reset_providers()
        return settings

    async def test_compact_asks_the_summarize_route_and_stores_its_answer(self) -> None:
        from asgiref.sync import sync_to_async

        await self._with_anthropic()
        self.upstream.reply("The user listed twenty words per turn.")
        await sync_to_async(add_turns)("ergon:m", conversation(10), tokens=50)

        summary = await acontext_compact(context_id="ergon:m", keep_tokens=4 * PER_TURN)
        await reset_providers()

        assert summary is not None
        assert summary.content == "The user listed twenty words per turn."
        assert (summary.source, summary.provider, summary.model) == (
            "model",
            "anthropic",
            "claude-3-haiku-20240307",
        )
        sent = self.upstream.last_request("/v1/messages").json
        assert sent["model"] == "claude-3-haiku-20240307"
        assert sent["max_tokens"] == 300
        assert "summarise conversations" in str(sent["system"])
        prompt = sent["messages"][-1]["content"]
        prompt_text = prompt if isinstance(prompt, str) else prompt[0]["text"]
        assert "user: turn 0 word0x0" in prompt_text
        assert "assistant: turn 7" in prompt_text
        assert "turn 8" not in prompt_text
        # The summary call itself is stored nowhere.
        assert await Context.objects.acount() == 1
        assert await Message.objects.acount() == 10

    async def test_compact_falls_back_to_extractive_when_the_model_fails(self) -> None:
        from asgiref.sync import sync_to_async

        await self._with_anthropic()
        self.upstream.fail(400)
        await sync_to_async(add_turns)("ergon:m", conversation(10), tokens=50)

        summary = await acontext_compact(context_id="ergon:m", keep_tokens=4 * PER_TURN)
        await reset_providers()

        assert summary is not None
        assert summary.source == "extractive"
        assert summary.content.startswith(EXTRACTIVE_HEADER)


def test_a_500_turn_conversation_stays_within_a_4000_token_window(db: None) -> None:
    """The request path as it will use this app: load the bundle, fit the summary and the
    history into the budget, append the exchange, compact. Nothing sent ever exceeds the
    budget, and the early turns stay represented by the summary."""
    from contexts.selectors import context_history_for_request
    from contexts.summaries import SUMMARY_MAX_TOKENS
    from contexts.windowing import fit_with_summary, history_budget, item_cost
    from rhetor_site.tokens import count_tokens

    budget = history_budget(context_window=4000, max_tokens=500, fixed_tokens=200)
    keep = budget - item_cost(SUMMARY_MAX_TOKENS)
    for turn in range(250):
        bundle = context_history_for_request(context_id="ergon:long")
        summary, kept = fit_with_summary(
            summary=bundle.summary,
            summary_tokens=bundle.summary_tokens,
            items=bundle.messages,
            budget_tokens=budget,
        )
        sent = sum(item_cost(m.tokens) for m in kept)
        sent += item_cost(count_tokens(summary)) if summary else 0
        assert sent <= budget
        if turn > 40:
            assert summary is not None
            assert "Earlier:" in summary or "turn 0" in summary
        add_turns(
            "ergon:long",
            [("user", f"question {turn} " + "detail " * 40), ("assistant", "answer " * 60)],
        )
        context_archive_overflow(context_id="ergon:long", keep_tokens=keep)

    context = Context.objects.get()
    assert context.message_count == 500
    assert context.archived_message_count + context.active_message_count == 500
    assert context.token_count + item_cost(0) * context.active_message_count <= keep
    assert Message.objects.filter(archived=False).first().role == "user"  # type: ignore[union-attr]

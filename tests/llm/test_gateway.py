"""The whole request path against fake upstreams over real loopback HTTP: what Rhetor sent,
what it made of the answer, fallbacks, streams that fail, and the metering of each attempt."""

import json
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from budget.models import UsageRecord
from budget.services import budget_limit_set
from contexts.models import Message
from tests.fakes import FakeUpstream

# serialized_rollback: the seeded rows (default prompts, prices) survive other tests' flushes.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


async def post(path: str, body: dict[str, Any]) -> Any:
    return await AsyncClient().post(path, json.dumps(body), content_type="application/json")


def sse_events(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(f[len("data: ") :]) for f in body.decode().split("\n\n") if f.strip()]


async def stream_events(response: Any) -> list[dict[str, Any]]:
    return sse_events(b"".join([c async for c in response.streaming_content]))


async def records() -> list[UsageRecord]:
    return [r async for r in UsageRecord.objects.order_by("attempt")]


async def test_anthropic_gets_the_route_the_prompt_and_the_history(
    anthropic_provider: Any, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.reply("First answer", input_tokens=120, output_tokens=3)
    await post("/message", {"message": "Hello", "context_id": "ergon:t", "task_type": "chat"})
    fake_upstream.reply("Second answer", input_tokens=140, output_tokens=3)

    response = await post(
        "/message", {"message": "And now?", "context_id": "ergon:t", "task_type": "chat"}
    )

    body = response.json()
    assert response.status_code == 200
    assert body["message"] == "Second answer"
    assert (body["provider"], body["model"]) == ("anthropic", "claude-3-haiku-20240307")
    assert body["fallback"] is False
    assert body["usage"] == {"input_tokens": 140, "output_tokens": 3, "cost": "0.00003875"}
    sent = fake_upstream.last_request("anthropic").json
    assert sent["model"] == "claude-3-haiku-20240307"
    assert sent["temperature"] == 0.8
    assert sent["max_tokens"] == 2000
    assert sent["system"].startswith("You are Ergon")
    assert [(m["role"], m["content"]) for m in sent["messages"]] == [
        ("user", "Hello"),
        ("assistant", "First answer"),
        ("user", "And now?"),
    ]
    record = (await records())[-1]
    assert (record.status, record.source, record.cost_nanos) == ("ok", "provider", 38_750)
    assert record.prompt_version_id is not None


async def test_openai_compatible_server_answers_when_it_is_the_only_provider(
    openai_provider: Any, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.reply("From the compatible server", input_tokens=5, output_tokens=4)

    response = await post("/message", {"message": "Hi", "context_id": "x"})

    body = response.json()
    assert response.status_code == 200
    assert body["message"] == "From the compatible server"
    assert (body["provider"], body["model"]) == ("openai", "gpt-4o")
    assert body["fallback"] is True  # the default route's primary is Anthropic
    sent = fake_upstream.last_request("openai").json
    assert sent["stream_options"] == {"include_usage": True}
    assert fake_upstream.requests_to("anthropic") == []


@pytest.fixture
async def both(anthropic_provider: Any, fake_upstream: FakeUpstream, settings: Any) -> None:
    from llm.providers import reset_providers

    settings.RHETOR_PROVIDERS = [*settings.RHETOR_PROVIDERS, "openai"]
    settings.OPENAI_API_KEY = "test-key"
    settings.OPENAI_BASE_URL = f"{fake_upstream.url}/v1"
    await reset_providers()


@pytest.mark.parametrize("status", [429, 500, 502, 503, 529])
async def test_retryable_failure_falls_back_and_meters_both_attempts(
    both: None, fake_upstream: FakeUpstream, status: int
) -> None:
    fake_upstream.fail(status, path="anthropic")
    fake_upstream.reply("Fallback answer", input_tokens=10, output_tokens=2)

    response = await post("/message", {"message": "Hi", "task_type": "code"})

    body = response.json()
    assert response.status_code == 200
    assert body["fallback"] is True
    assert (body["provider"], body["model"]) == ("openai", "gpt-4-turbo")
    assert body["message"] == "Fallback answer"
    failed, served = await records()
    assert (failed.provider, failed.status, failed.cost_nanos, failed.attempt) == (
        "anthropic",
        "error",
        0,
        1,
    )
    assert (served.provider, served.status, served.is_fallback, served.attempt) == (
        "openai",
        "ok",
        True,
        2,
    )
    assert failed.request_id == served.request_id


async def test_killing_the_primary_makes_the_fallback_answer(both: None, settings: Any) -> None:
    from llm.providers import reset_providers

    dead = FakeUpstream().start()
    settings.ANTHROPIC_BASE_URL = dead.url
    dead.stop()  # nothing listens there any more
    await reset_providers()

    response = await post("/message", {"message": "Anyone there?", "task_type": "planning"})

    assert response.status_code == 200
    assert response.json()["provider"] == "openai"
    assert response.json()["fallback"] is True


async def test_terminal_error_is_reported_with_the_providers_message(
    both: None, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.fail(400, message="max_tokens: 4000 > 1024", path="anthropic")

    response = await post("/message", {"message": "Hi", "task_type": "code"})

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "provider_error"
    assert "max_tokens: 4000 > 1024" in body["error"]
    assert fake_upstream.requests_to("openai") == []
    assert await Message.objects.aexists() is False
    [record] = await records()
    assert (record.status, record.cost_nanos) == ("error", 0)


async def test_authentication_failure_upstream_is_a_502(
    both: None, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.fail(401, path="anthropic")

    response = await post("/message", {"message": "Hi"})

    assert response.status_code == 502
    assert response.json()["code"] == "provider_auth_failed"


async def test_every_model_failing_is_a_503(both: None, fake_upstream: FakeUpstream) -> None:
    fake_upstream.fail(503, times=None)

    response = await post("/message", {"message": "Hi"})

    assert response.status_code == 503
    assert response.json()["code"] == "provider_unavailable"
    assert {a["outcome"] for a in response.json()["attempts"]} == {"failed"}
    assert all(r.status == "error" for r in await records())


async def test_stream_ends_with_usage_after_the_text(
    anthropic_provider: Any, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.reply("one two three four", chunks=4, input_tokens=9, output_tokens=4)

    events = await stream_events(await post("/stream", {"message": "Count", "task_type": "chat"}))

    assert [e["chunk"] for e in events[:-1]] == ["one ", "two ", "three ", "four"]
    assert events[-1]["done"] is True
    assert events[-1]["chunk"] == ""
    assert events[-1]["usage"]["input_tokens"] == 9
    assert events[-1]["usage"]["output_tokens"] == 4


async def test_stream_cut_by_the_upstream_ends_with_an_error_event(
    anthropic_provider: Any, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.reply("one two three four", chunks=4)
    fake_upstream.cut(after_chunks=2, path="anthropic")

    events = await stream_events(await post("/stream", {"message": "Count", "context_id": "cut"}))

    assert events[-1]["done"] is True
    assert events[-1]["error"]
    assert all("error" not in e for e in events[:-1])
    reply = await Message.objects.aget(context__context_id="cut", role="assistant")
    assert reply.metadata["partial"] is True
    assert reply.metadata["status"] == "error"
    [record] = await records()
    assert record.status == "error"


@pytest.mark.parametrize("fault", ["drop_final", "malformed", "truncate"])
async def test_broken_streams_never_end_silently(
    anthropic_provider: Any, fake_upstream: FakeUpstream, fault: str
) -> None:
    fake_upstream.reply("one two three four", chunks=4)
    getattr(fake_upstream, fault)(path="anthropic")

    events = await stream_events(await post("/stream", {"message": "Count"}))

    assert events[-1]["done"] is True
    assert "error" in events[-1]


async def test_failure_before_the_first_chunk_of_a_stream_is_an_http_error(
    anthropic_provider: Any, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.fail(503, path="anthropic")

    response = await post("/stream", {"message": "Hi"})

    assert response.status_code == 503
    assert response.json()["code"] == "provider_unavailable"


async def test_enforced_budget_refuses_with_402_and_sends_nothing(
    anthropic_provider: Any, fake_upstream: FakeUpstream
) -> None:
    await sync_to_async(budget_limit_set)(period="daily", limit_nanos=1_000, enforcement="enforce")

    response = await post("/message", {"message": "Hi", "task_type": "code"})

    assert response.status_code == 402
    body = response.json()
    assert body["code"] == "budget_exceeded"
    assert body["period"] == "daily"
    assert body["limit"]
    assert body["needed"]
    assert fake_upstream.requests == []
    assert await UsageRecord.objects.aexists() is False


async def test_budget_steers_to_a_cheaper_model_and_says_so(
    anthropic_provider: Any, fake_upstream: FakeUpstream
) -> None:
    # $0.02 affords haiku's worst case (4000 tokens * 1250 nano-USD = $0.005) but not opus's.
    await sync_to_async(budget_limit_set)(
        period="daily", limit_nanos=20_000_000, enforcement="enforce"
    )
    fake_upstream.reply("Cheap answer", input_tokens=10, output_tokens=2)

    response = await post("/message", {"message": "Hi", "task_type": "code"})

    body = response.json()
    assert response.status_code == 200
    assert body["provider"] == "anthropic"
    assert body["model"] != "claude-3-opus-20240229"
    assert fake_upstream.last_request("anthropic").json["model"] == body["model"]
    assert any("cheaper" in w for w in body["budget_warnings"])


async def test_upstream_is_reached_over_real_http(fake_upstream: FakeUpstream) -> None:
    fake_upstream.reply("plain")
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{fake_upstream.url}/v1/chat/completions",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
        )
    assert response.json()["choices"][0]["message"]["content"] == "plain"


async def test_a_500_turn_conversation_fits_a_4000_token_model_and_keeps_a_summary(
    anthropic_provider: Any, fake_upstream: FakeUpstream
) -> None:
    import asyncio

    from contexts.models import ModelContextWindow
    from contexts.selectors import context_window_clear_cache
    from rhetor_site.tokens import count_tokens

    await ModelContextWindow.objects.filter(model="claude-3-haiku-20240307").aupdate(
        context_window=4000
    )
    context_window_clear_cache()
    fake_upstream.reply("Noted, thank you for the detail about that topic.")
    filler = "the quick brown fox jumps over the lazy dog near the river bank " * 3

    for turn in range(500):
        response = await post(
            "/message",
            {"message": f"Turn {turn}: {filler}", "context_id": "ergon:long", "task_type": "chat"},
        )
        assert response.status_code == 200, response.content
        await asyncio.sleep(0)  # let the background compaction run between turns

    chats = [r for r in fake_upstream.requests_to("anthropic") if "Turn" in str(r.json)]
    for request in chats:
        sent = request.json
        tokens = count_tokens(sent.get("system", "")) + sum(
            count_tokens(m["content"]) + 4 for m in sent["messages"]
        )
        assert tokens + sent["max_tokens"] <= 4000
    last = chats[-1].json
    assert "Summary of the earlier conversation" in last["system"]
    assert last["messages"][-1]["content"].startswith("Turn 499:")
    assert await Message.objects.filter(context__context_id="ergon:long", archived=True).aexists()


async def test_a_message_larger_than_the_window_is_truncated_visibly_and_flagged(
    anthropic_provider: Any, fake_upstream: FakeUpstream
) -> None:
    from contexts.models import ModelContextWindow
    from contexts.selectors import context_window_clear_cache
    from rhetor_site.tokens import count_tokens

    await ModelContextWindow.objects.filter(model="claude-3-haiku-20240307").aupdate(
        context_window=3000
    )
    context_window_clear_cache()
    huge = "word " * 5000

    response = await post("/message", {"message": huge, "context_id": "big", "task_type": "chat"})

    assert response.status_code == 200
    sent = fake_upstream.last_request("anthropic").json
    text = sent["messages"][-1]["content"]
    assert "truncated" in text
    assert count_tokens(text) + sent["max_tokens"] < 3000
    stored = await Message.objects.aget(context__context_id="big", role="user")
    assert stored.content == huge  # nothing is lost: the context keeps the whole message
    assert stored.metadata["truncated"] is True
    assert stored.metadata["original_tokens"] >= 5000


async def test_64_concurrent_requests_never_overspend_an_enforced_limit(
    anthropic_provider: Any, fake_upstream: FakeUpstream
) -> None:
    import asyncio

    from budget.models import BudgetReservation

    # Haiku's worst case for max_tokens=100 is about (input + 100) tokens at 250 / 1250
    # nano-USD: the limit affords about ten. The fake counts the prompt's words as input.
    fake_upstream.reply("ok", output_tokens=100, delay=0.01)
    await sync_to_async(budget_limit_set)(
        period="daily", limit_nanos=2_000_000, enforcement="enforce"
    )
    body = {"message": "Hi", "task_type": "chat", "options": {"max_tokens": 100}}

    responses = await asyncio.gather(*(post("/message", body) for _ in range(64)))

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 402}
    served = statuses.count(200)
    ledger = await records()
    ok = [r for r in ledger if r.status == "ok"]
    assert 1 <= served < 64
    assert len(ok) == served
    assert sum(r.cost_nanos for r in ledger) <= 2_000_000
    assert all(r.cost_nanos == r.input_tokens * 250 + 100 * 1250 for r in ok)
    assert await BudgetReservation.objects.filter(state="held").aexists() is False


async def test_a_route_that_permits_it_lowers_max_tokens_to_fit_the_budget_and_says_so(
    anthropic_provider: Any, fake_upstream: FakeUpstream, settings: Any, tmp_path: Any
) -> None:
    config = tmp_path / "tasks.json"
    config.write_text(
        json.dumps(
            {
                "code": {
                    "provider": "anthropic",
                    "model": "claude-3-opus-20240229",
                    "options": {"max_tokens": 4000, "lower_max_tokens": True},
                }
            }
        )
    )
    settings.RHETOR_TASK_CONFIG = str(config)
    # $0.10 cannot hold opus's worst case (4000 output tokens at $75/M = $0.30), but it
    # affords about 1300 output tokens after the prompt.
    await sync_to_async(budget_limit_set)(
        period="daily", limit_nanos=100_000_000, enforcement="enforce"
    )
    fake_upstream.reply("Short answer", input_tokens=10, output_tokens=3)

    response = await post("/message", {"message": "Hi", "task_type": "code"})

    body = response.json()
    assert response.status_code == 200, body
    assert body["model"] == "claude-3-opus-20240229"  # lowered, not steered elsewhere
    sent = fake_upstream.last_request("anthropic").json["max_tokens"]
    assert 0 < sent < 4000
    assert any("max_tokens" in w and str(sent) in w for w in body["budget_warnings"])
    (record,) = await records()
    assert record.cost_nanos <= 100_000_000


async def test_without_the_routes_permission_max_tokens_is_never_lowered(
    anthropic_provider: Any, fake_upstream: FakeUpstream
) -> None:
    await sync_to_async(budget_limit_set)(
        period="daily", limit_nanos=100_000_000, enforcement="enforce"
    )
    fake_upstream.reply("Cheap answer", input_tokens=10, output_tokens=2)

    response = await post("/message", {"message": "Hi", "task_type": "code"})

    body = response.json()
    assert response.status_code == 200, body
    assert body["model"] != "claude-3-opus-20240229"  # steered to a cheaper model instead
    assert fake_upstream.last_request("anthropic").json["max_tokens"] == 4000

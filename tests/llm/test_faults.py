"""Every upstream fault of the fake's menu, end to end: real providers (Anthropic first,
OpenAI as the fallback, or Ollama) pointed at tests/fakes/upstream.py, requests through
/message and /stream. For each fault the test states what Rhetor does:

- a fault before the first chunk: the fallback answers (`fallback: true`), or a short
  Retry-After is waited out and the same model answers;
- a fault after the first chunk: the stream ends with an `error` event (`done: true`), or
  /message answers 502 `stream_interrupted`;
- the ledger is right: one usage record per attempt that reached a provider, failed ones
  charged exactly what the provider had reported (nothing when it reported nothing);
- nothing stays reserved.
"""

import json
from typing import Any

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient

from budget.models import BudgetReservation, UsageRecord
from llm.circuit import breakers
from llm.providers import reset_providers
from rhetor_site.routing import websocket_urlpatterns
from rhetor_site.tokens import count_tokens
from tests.fakes.upstream import Blackhole, FakeUpstream, Fault

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

# Prices of the chat route's models, nano-USD per token (input, output).
HAIKU = (250, 1_250)
GPT35 = (500, 1_500)


async def post(path: str, body: dict[str, Any]) -> Any:
    return await AsyncClient().post(path, json.dumps(body), content_type="application/json")


async def stream(body: dict[str, Any]) -> list[dict[str, Any]]:
    response = await post("/stream", body)
    assert response.status_code == 200, response.content
    raw = b"".join([c async for c in response.streaming_content]).decode()
    return [json.loads(f[len("data: ") :]) for f in raw.split("\n\n") if f.strip()]


async def ledger() -> list[UsageRecord]:
    return [r async for r in UsageRecord.objects.order_by("created_at", "id")]


async def assert_nothing_reserved() -> None:
    """Every hold was settled into exactly one usage record."""
    assert await BudgetReservation.objects.filter(state="held").acount() == 0
    assert await UsageRecord.objects.acount() == await BudgetReservation.objects.acount()


def cost(record: UsageRecord, price: tuple[int, int]) -> int:
    return record.input_tokens * price[0] + record.output_tokens * price[1]


@pytest.fixture
async def both(fake_upstream: FakeUpstream, settings: Any) -> FakeUpstream:
    """Anthropic (the chat route's primary) and OpenAI (its fallback) on the fake."""
    settings.RHETOR_PROVIDERS = [*settings.RHETOR_PROVIDERS, "anthropic", "openai"]
    settings.ANTHROPIC_API_KEY = settings.OPENAI_API_KEY = "test-key"
    settings.ANTHROPIC_BASE_URL = fake_upstream.url
    settings.OPENAI_BASE_URL = f"{fake_upstream.url}/v1"
    await reset_providers()
    fake_upstream.reply("The answer", input_tokens=20, output_tokens=2)
    return fake_upstream


CHAT = {"message": "Hi", "task_type": "chat", "context_id": "faults"}


# --- Before the first chunk: fallback ------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_falls_back_and_charges_the_failed_attempt_nothing(
    both: FakeUpstream, status: int
) -> None:
    both.fail(status, path="anthropic")

    events = await stream(CHAT)

    assert [e["chunk"] for e in events[:-1]] == ["The ", "answer"]
    done = events[-1]
    assert (done["done"], done["provider"], done["fallback"]) == (True, "openai", True)
    failed, served = await ledger()
    assert (failed.provider, failed.status, failed.source, failed.cost_nanos) == (
        "anthropic",
        "error",
        "none",
        0,
    )
    assert str(status) in failed.error or failed.error
    assert (served.provider, served.model, served.status) == ("openai", "gpt-3.5-turbo", "ok")
    assert served.cost_nanos == 20 * GPT35[0] + 2 * GPT35[1]
    await assert_nothing_reserved()


async def test_429_with_a_short_retry_after_is_waited_out_and_the_same_model_answers(
    both: FakeUpstream, settings: Any
) -> None:
    settings.RHETOR_RETRY_AFTER_MAX_WAIT = 1.0
    both.fail(429, retry_after="0.05", path="anthropic")

    response = await post("/message", CHAT)

    body = response.json()
    assert response.status_code == 200
    assert (body["provider"], body["fallback"]) == ("anthropic", False)
    assert len(both.requests_to("anthropic")) == 2
    assert both.requests_to("openai") == []
    limited, served = await ledger()
    assert (limited.attempt, limited.status, limited.cost_nanos) == (1, "error", 0)
    assert (served.attempt, served.status, served.is_fallback) == (2, "ok", False)
    assert served.model == limited.model == "claude-3-haiku-20240307"
    await assert_nothing_reserved()


async def test_429_with_a_long_retry_after_holds_the_model_off_and_falls_back(
    both: FakeUpstream, settings: Any
) -> None:
    settings.RHETOR_RETRY_AFTER_MAX_WAIT = 1.0
    both.fail(429, retry_after="120", path="anthropic")

    first = await post("/message", CHAT)
    second = await post("/message", CHAT)

    assert [r.json()["provider"] for r in (first, second)] == ["openai", "openai"]
    assert all(r.json()["fallback"] is True for r in (first, second))
    # The second request did not ask Anthropic at all: it is held off for the Retry-After.
    assert len(both.requests_to("anthropic")) == 1
    assert [(r.provider, r.status) for r in await ledger()] == [
        ("anthropic", "error"),
        ("openai", "ok"),
        ("openai", "ok"),
    ]
    [state] = [s for s in breakers.states() if s.provider == "anthropic"]
    assert state.state == "open"
    assert 110 < state.retry_in <= 120
    await assert_nothing_reserved()


async def test_connect_timeout_falls_back(both: FakeUpstream, settings: Any) -> None:
    settings.RHETOR_CONNECT_TIMEOUT = 0.3
    with Blackhole() as hole:
        settings.ANTHROPIC_BASE_URL = hole.url
        await reset_providers()

        response = await post("/message", CHAT)

    assert response.status_code == 200
    assert (response.json()["provider"], response.json()["fallback"]) == ("openai", True)
    failed, served = await ledger()
    assert (failed.provider, failed.status, failed.cost_nanos) == ("anthropic", "error", 0)
    assert "timed out" in failed.error
    assert served.provider == "openai"
    await assert_nothing_reserved()


async def test_stall_after_the_headers_times_out_and_falls_back(
    both: FakeUpstream, settings: Any
) -> None:
    settings.RHETOR_PROVIDER_TIMEOUT = 0.5
    both.stall(5, after_headers=True, path="anthropic")

    events = await stream(CHAT)

    assert events[-1]["done"] is True
    assert (events[-1]["provider"], events[-1]["fallback"]) == ("openai", True)
    assert "".join(e["chunk"] for e in events) == "The answer"
    failed, _served = await ledger()
    assert (failed.provider, failed.status, failed.cost_nanos) == ("anthropic", "error", 0)
    await assert_nothing_reserved()


async def test_connection_reset_before_the_answer_falls_back(both: FakeUpstream) -> None:
    both.reset_connection(path="anthropic")

    response = await post("/message", CHAT)

    assert response.status_code == 200
    assert (response.json()["provider"], response.json()["fallback"]) == ("openai", True)
    assert next((r.provider, r.status, r.cost_nanos) for r in await ledger()) == (
        "anthropic",
        "error",
        0,
    )
    await assert_nothing_reserved()


async def test_every_model_failing_is_a_503_with_nothing_reserved(both: FakeUpstream) -> None:
    both.fail(503, times=None)

    response = await post("/message", CHAT)

    assert response.status_code == 503
    assert response.json()["code"] == "provider_unavailable"
    assert {r.status for r in await ledger()} == {"error"}
    assert sum(r.cost_nanos for r in await ledger()) == 0
    await assert_nothing_reserved()


# --- After the first chunk: a clear error event ----------------------------------------------


async def test_stream_cut_after_n_chunks_ends_with_an_error_and_charges_what_was_delivered(
    both: FakeUpstream,
) -> None:
    both.reply("one two three four", chunks=4, input_tokens=30, output_tokens=4)
    both.cut(after_chunks=2, path="anthropic")

    events = await stream(CHAT)

    assert [e["chunk"] for e in events[:-1]] == ["one ", "two "]
    assert events[-1]["done"] is True
    assert events[-1]["error"]
    assert both.requests_to("openai") == []  # a stream that began is never swapped
    [record] = await ledger()
    # message_start reported 30 input tokens and 1 output token; two chunks were delivered,
    # which the provider generated and bills: the output is what was delivered.
    assert (record.status, record.source, record.input_tokens, record.output_tokens) == (
        "error",
        "partial",  # counted by Rhetor, not a complete report of the provider's
        30,
        count_tokens("one two "),
    )
    assert record.cost_nanos == cost(record, HAIKU) > 0
    await assert_nothing_reserved()


async def test_an_openai_stream_cut_is_charged_its_prompt_and_what_was_delivered(
    both: FakeUpstream,
) -> None:
    # OpenAI-style streams report usage only at their end: a cut leaves no count at all.
    both.reply("one two three four five six", chunks=6, input_tokens=40, output_tokens=6)
    both.cut(after_chunks=3, path="openai")

    events = await stream({**CHAT, "options": {"provider": "openai", "model": "gpt-3.5-turbo"}})

    delivered = "".join(e["chunk"] for e in events[:-1])
    assert delivered
    assert events[-1]["error"]
    [record] = await ledger()
    assert (record.provider, record.status, record.source) == ("openai", "error", "partial")
    assert record.input_tokens > 0  # the prompt, counted offline
    assert record.output_tokens == count_tokens(delivered)
    assert record.cost_nanos == cost(record, GPT35) > 0
    await assert_nothing_reserved()


async def test_stream_cut_on_message_is_a_502_not_a_partial_answer(both: FakeUpstream) -> None:
    both.reply("one two three four", chunks=4, input_tokens=30)
    both.cut(after_chunks=1, path="anthropic")

    response = await post("/message", CHAT)

    assert response.status_code == 502
    assert response.json()["code"] == "stream_interrupted"
    await assert_nothing_reserved()


@pytest.mark.parametrize(
    ("_case", "arm"),
    [
        ("malformed chunk", lambda f: f.malformed(after_chunks=2, path="anthropic")),
        ("no message_stop", lambda f: f.drop_final(path="anthropic")),
        ("no closing events", lambda f: f.truncate(path="anthropic")),
        ("reset mid-stream", lambda f: f.reset_connection(after_chunks=2, path="anthropic")),
        ("in-stream error", lambda f: f.stream_error(529, after_chunks=2, path="anthropic")),
    ],
)
async def test_a_broken_stream_ends_with_an_error_event_and_a_settled_record(
    both: FakeUpstream, _case: str, arm: Any
) -> None:
    both.reply("one two three four", chunks=4, input_tokens=30, output_tokens=4)
    arm(both)

    events = await stream(CHAT)

    assert events[0]["chunk"] == "one "
    assert all("error" not in e for e in events[:-1])
    assert events[-1]["done"] is True
    assert events[-1]["error"]
    [record] = await ledger()
    assert (record.provider, record.status) == ("anthropic", "error")
    # Charged what Anthropic reported before it broke (message_start), never more.
    assert record.input_tokens in (0, 30)
    assert record.output_tokens <= 4
    assert record.cost_nanos == cost(record, HAIKU)
    await assert_nothing_reserved()


# --- Ollama's NDJSON ------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["cut", "malformed", "drop_final"])
async def test_ollama_stream_faults_end_with_an_error_event(
    ollama_provider: Any, fake_upstream: FakeUpstream, fault: str
) -> None:
    fake_upstream.reply("one two three four", chunks=4, input_tokens=8, output_tokens=4)
    if fault == "drop_final":
        fake_upstream.drop_final(path="/api/chat")
    else:
        getattr(fake_upstream, fault)(after_chunks=2, path="/api/chat")

    events = await stream({"message": "Hi", "options": {"provider": "ollama"}})

    assert events[0]["chunk"] == "one "
    assert events[-1]["done"] is True
    assert events[-1]["error"]
    [record] = await ledger()
    assert (record.provider, record.status, record.cost_nanos) == ("ollama", "error", 0)
    await assert_nothing_reserved()


async def test_ollama_503_is_a_clear_error_when_nothing_else_is_configured(
    ollama_provider: Any, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.fail(503, path="/api/chat", times=None)

    response = await post("/message", {"message": "Hi", "options": {"provider": "ollama"}})

    assert response.status_code == 503
    assert response.json()["code"] == "provider_unavailable"
    assert "ollama" in response.json()["error"]
    await assert_nothing_reserved()


# --- Flapping, and the circuit breaker end to end ----------------------------------------------


async def test_a_flapping_upstream_alternates_between_fallback_and_primary(
    both: FakeUpstream,
) -> None:
    both.flap(503, path="anthropic")

    replies = [(await post("/message", CHAT)).json() for _ in range(4)]

    assert [(r["provider"], r["fallback"]) for r in replies] == [
        ("openai", True),
        ("anthropic", False),
        ("openai", True),
        ("anthropic", False),
    ]
    # Every failure was followed by a success: the circuit never opened.
    assert all(s.state == "closed" for s in breakers.states())
    await assert_nothing_reserved()


async def test_a_flapping_upstream_opens_the_circuit_when_failures_run_long(
    both: FakeUpstream, settings: Any
) -> None:
    settings.RHETOR_CIRCUIT_FAILURE_THRESHOLD = 2
    both.flap(Fault("reset"), fail=3, succeed=1, path="anthropic")

    for _ in range(3):
        assert (await post("/message", CHAT)).json()["provider"] == "openai"

    # Two resets opened the circuit: the third request did not reach Anthropic.
    assert len(both.requests_to("anthropic")) == 2
    [state] = [s for s in breakers.states() if s.provider == "anthropic"]
    assert (state.state, state.consecutive_failures) == ("open", 2)
    await assert_nothing_reserved()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_dead_upstream_is_skipped_then_probed_and_the_circuit_closes_when_it_returns(
    both: FakeUpstream, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(breakers, "_clock", clock)
    settings.RHETOR_CIRCUIT_FAILURE_THRESHOLD = 2
    settings.RHETOR_CIRCUIT_COOLDOWN = 30.0
    both.fail(503, path="anthropic", times=2)
    for _ in range(2):
        await post("/message", CHAT)

    skipped = await post("/message", CHAT)
    health = (await AsyncClient().get("/health")).json()

    assert skipped.json()["provider"] == "openai"
    assert len(both.requests_to("anthropic")) == 2
    assert health["circuit_breakers"] == {"anthropic/claude-3-haiku-20240307": "open"}
    clock.now += 31  # the cooldown passed; the upstream is back
    probe = await post("/message", CHAT)
    assert (probe.json()["provider"], probe.json()["fallback"]) == ("anthropic", False)
    assert (await AsyncClient().get("/health")).json()["circuit_breakers"] == {}
    assert [s.state for s in breakers.states() if s.provider == "anthropic"] == ["closed"]
    await assert_nothing_reserved()


async def test_every_circuit_open_answers_503_with_a_retry_after(
    both: FakeUpstream, settings: Any
) -> None:
    settings.RHETOR_RETRY_AFTER_MAX_WAIT = 1.0
    both.fail(429, retry_after="120", times=None)  # Anthropic and OpenAI alike

    first = await post("/message", CHAT)
    second = await post("/message", CHAT)

    assert first.status_code == second.status_code == 503
    assert "retry_after" not in first.json()  # every model was tried and failed
    assert {a["outcome"] for a in second.json()["attempts"]} == {"circuit_open"}
    assert 110 <= second.json()["retry_after"] <= 120
    assert second["Retry-After"] == str(second.json()["retry_after"])
    assert len(both.requests) == len(first.json()["attempts"])  # the second sent nothing
    await assert_nothing_reserved()


async def test_a_stream_cut_over_the_websocket_ends_with_an_error_update_then_typing_off(
    both: FakeUpstream,
) -> None:
    both.reply("one two three four", chunks=4, input_tokens=30, output_tokens=4)
    both.cut(after_chunks=2, path="anthropic")
    ws = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws")
    connected, _ = await ws.connect()
    assert connected
    try:
        payload = {"message": "Count", "context": "ergon", "task_type": "chat"}
        await ws.send_json_to({"type": "LLM_REQUEST", "payload": payload, "req_id": "7"})
        frames = [await ws.receive_json_from(timeout=10) for _ in range(5)]
    finally:
        await ws.disconnect()

    typing_on, one, two, failed, typing_off = (f["payload"] for f in frames)
    assert typing_on["isTyping"] is True
    assert [one["chunk"], two["chunk"]] == ["one ", "two "]
    assert (failed["done"], failed["chunk"], failed["provider"]) == (True, "", "anthropic")
    assert "failed mid-stream" in failed["error"]
    assert typing_off["isTyping"] is False
    assert all(f["req_id"] == "7" for f in frames)
    [record] = await ledger()
    assert (record.status, record.input_tokens) == ("error", 30)
    # The two delivered chunks are charged (the upstream generated them).
    assert record.cost_nanos == 30 * HAIKU[0] + count_tokens("one two ") * HAIKU[1]
    await assert_nothing_reserved()

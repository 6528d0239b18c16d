"""Provider contract tests (R23): the same behaviour tests run against every provider.

`ProviderContractMixin` (after Django's SessionTestsMixin) holds what every provider
promises; `UpstreamContractMixin` adds what a provider talking to an upstream promises,
checked against the fake upstream (tests/fakes/upstream.py): exact usage, what was sent,
and how each upstream failure maps to a typed ProviderError.
"""

import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, ClassVar

import pytest

from llm.providers import get_provider
from llm.providers.anthropic import AnthropicProvider
from llm.providers.base import (
    ChatMessage,
    CompletionRequest,
    Provider,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderNotConfigured,
    ProviderResponseError,
    ProviderTimeout,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
    retry_after_seconds,
)
from llm.providers.ollama import OllamaProvider
from llm.providers.openai import OpenAIProvider
from llm.providers.simulated import SimulatedProvider
from rhetor_site.tokens import estimate_messages_tokens, estimate_tokens
from tests.fakes.upstream import FakeUpstream, RecordedRequest

SYSTEM = "You are terse."
HISTORY = (
    ChatMessage("user", "What is the capital of France?"),
    ChatMessage("assistant", "Paris."),
    ChatMessage("user", "And of Italy?"),
)
# A stall far longer than the client timeout used with it.
STALL = 3.0
SHORT_TIMEOUT = 0.15


@dataclasses.dataclass(frozen=True)
class Sent:
    """What a provider sent upstream, in one shape for every wire format."""

    system: str | None
    messages: list[tuple[str, str]]
    temperature: float | None
    max_tokens: int | None
    stream: bool


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in events]


async def collect_until_error(
    events: AsyncIterator[StreamEvent],
) -> tuple[list[StreamEvent], ProviderError]:
    received: list[StreamEvent] = []
    try:
        async for event in events:
            received.append(event)
    except ProviderError as error:
        return received, error
    pytest.fail(f"the stream ended without a ProviderError after {received!r}")


class ProviderContractMixin:
    """What every provider promises. Subclasses define `model` and a `provider` fixture."""

    model: ClassVar[str]

    def request(self, **changes: Any) -> CompletionRequest:
        base = CompletionRequest(
            model=self.model, messages=HISTORY, system=SYSTEM, temperature=0.25, max_tokens=64
        )
        return dataclasses.replace(base, **changes)

    async def test_complete_returns_text_usage_and_model(self, provider: Provider) -> None:
        completion = await provider.complete(self.request())

        assert completion.text
        assert completion.model == self.model
        assert completion.usage.source == "provider"
        assert completion.usage.input_tokens > 0
        assert completion.usage.output_tokens > 0

    async def test_stream_yields_text_then_exactly_one_end(self, provider: Provider) -> None:
        completion = await provider.complete(self.request())

        events = await collect(provider.stream(self.request()))

        *deltas, end = events
        assert deltas
        assert all(isinstance(event, TextDelta) for event in deltas)
        assert isinstance(end, StreamEnd)
        assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == completion.text
        assert end.usage == completion.usage
        assert end.model == self.model

    async def test_stream_can_be_abandoned_after_the_first_chunk(self, provider: Provider) -> None:
        events = provider.stream(self.request())
        first = await anext(aiter(events))
        await events.aclose()  # type: ignore[attr-defined]

        assert isinstance(first, TextDelta)
        assert (await provider.complete(self.request())).text

    async def test_catalogue_knows_its_default_model(self, provider: Provider) -> None:
        models = provider.models()

        assert models
        assert provider.default_model() in {m.id for m in models}
        assert provider.knows_model(provider.default_model())
        assert not provider.knows_model("no-such-model-anywhere")

    async def test_is_configured_and_available(self, provider: Provider) -> None:
        assert isinstance(provider, Provider)
        assert provider.is_configured()
        assert await provider.is_available()


class TestSimulatedProvider(ProviderContractMixin):
    model = "simulated-standard"

    @pytest.fixture
    def provider(self) -> SimulatedProvider:
        return SimulatedProvider(delay=0)


class UpstreamContractMixin(ProviderContractMixin):
    """What a provider in front of an upstream promises, checked against the fake."""

    provider_id: ClassVar[str]

    def sent(self, recorded: RecordedRequest) -> Sent:
        raise NotImplementedError

    def last_sent(self, upstream: FakeUpstream) -> Sent:
        return self.sent(upstream.last_request(self.provider_id))

    async def call(self, provider: Provider, *, streaming: bool) -> None:
        if streaming:
            await collect(provider.stream(self.request()))
        else:
            await provider.complete(self.request())

    # --- Answers --------------------------------------------------------------------------

    async def test_usage_is_exactly_what_the_upstream_reported(
        self, provider: Provider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.reply("Rome, of course.", input_tokens=17, output_tokens=5)

        completion = await provider.complete(self.request())
        *deltas, end = await collect(provider.stream(self.request()))

        assert completion.text == "Rome, of course."
        assert completion.usage == Usage(input_tokens=17, output_tokens=5, source="provider")
        assert isinstance(end, StreamEnd)
        assert end.usage == Usage(input_tokens=17, output_tokens=5, source="provider")
        assert [d.text for d in deltas if isinstance(d, TextDelta)] == ["Rome, ", "of ", "course."]

    async def test_stream_carries_the_upstream_chunks(
        self, provider: Provider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.reply("one two three four five six", chunks=3)

        *deltas, _end = await collect(provider.stream(self.request()))

        assert [d.text for d in deltas if isinstance(d, TextDelta)] == [
            "one two ",
            "three four ",
            "five six",
        ]

    async def test_close_delimited_stream_is_read_to_the_end(
        self, provider: Provider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.reply("Rome.", framing="close", input_tokens=9, output_tokens=2)

        *_deltas, end = await collect(provider.stream(self.request()))

        assert isinstance(end, StreamEnd)
        assert end.usage == Usage(input_tokens=9, output_tokens=2)

    async def test_max_tokens_cut_reports_the_reason(
        self, provider: Provider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.reply("a b c d e f g h")

        completion = await provider.complete(self.request(max_tokens=3))

        assert completion.text == "a b c "
        assert completion.finish_reason in ("length", "max_tokens")

    # --- What reached the upstream --------------------------------------------------------

    @pytest.mark.parametrize("streaming", [False, True], ids=["_case_complete", "_case_stream"])
    async def test_sends_system_history_and_options(
        self, provider: Provider, fake_upstream: FakeUpstream, streaming: bool
    ) -> None:
        await self.call(provider, streaming=streaming)

        assert self.last_sent(fake_upstream) == Sent(
            system=SYSTEM,
            messages=[(m.role, m.content) for m in HISTORY],
            temperature=0.25,
            max_tokens=64,
            stream=streaming,
        )
        assert len(fake_upstream.requests) == 1

    # --- Errors ---------------------------------------------------------------------------

    @pytest.mark.parametrize("status", [500, 502, 503, 529])
    async def test_server_errors_are_retryable_with_the_upstream_message(
        self, provider: Provider, fake_upstream: FakeUpstream, status: int
    ) -> None:
        fake_upstream.fail(status, message=f"upstream says {status}", path=self.provider_id)

        with pytest.raises(ProviderHTTPError) as raised:
            await provider.complete(self.request())

        assert raised.value.status_code == status
        assert raised.value.retryable is True
        assert raised.value.message == f"upstream says {status}"
        assert raised.value.usage is None
        # The SDK did not retry on its own: the router owns retries.
        assert len(fake_upstream.requests) == 1

    async def test_rate_limit_is_retryable_and_carries_retry_after(
        self, provider: Provider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.fail(429, message="slow down", retry_after="7", path=self.provider_id)

        with pytest.raises(ProviderHTTPError) as raised:
            await provider.complete(self.request())

        assert (raised.value.status_code, raised.value.retryable) == (429, True)
        assert raised.value.retry_after == 7.0
        assert raised.value.message == "slow down"

    @pytest.mark.parametrize("status", [400, 401, 403])
    async def test_client_errors_are_terminal_with_the_upstream_message(
        self, provider: Provider, fake_upstream: FakeUpstream, status: int
    ) -> None:
        fake_upstream.fail(status, message=f"you sent a bad {status}", path=self.provider_id)

        with pytest.raises(ProviderHTTPError) as raised:
            await provider.complete(self.request())

        assert raised.value.status_code == status
        assert raised.value.retryable is False
        assert raised.value.message == f"you sent a bad {status}"

    async def test_error_status_on_a_stream_raises_before_any_event(
        self, provider: Provider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.fail(503, message="busy", path=self.provider_id)

        received, error = await collect_until_error(provider.stream(self.request()))

        assert received == []
        assert isinstance(error, ProviderHTTPError)
        assert (error.status_code, error.message, error.retryable) == (503, "busy", True)

    @pytest.mark.parametrize("streaming", [False, True], ids=["_case_complete", "_case_stream"])
    async def test_refused_connection_is_a_retryable_connection_error(
        self, provider: Provider, fake_upstream: FakeUpstream, streaming: bool
    ) -> None:
        fake_upstream.down()

        with pytest.raises(ProviderConnectionError) as raised:
            await self.call(provider, streaming=streaming)

        assert raised.value.retryable is True
        assert raised.value.usage is None

    async def test_reset_connection_is_a_connection_error(
        self, provider: Provider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.reset_connection(path=self.provider_id)

        with pytest.raises(ProviderConnectionError):
            await provider.complete(self.request())

        assert len(fake_upstream.requests_to(self.provider_id)) == 1

    async def test_stall_before_headers_times_out(
        self, provider: Provider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.stall(STALL, path=self.provider_id)
        started = time.monotonic()

        with pytest.raises(ProviderTimeout) as raised:
            await provider.complete(self.request(timeout=SHORT_TIMEOUT))

        assert time.monotonic() - started < STALL / 2
        assert raised.value.retryable is True

    async def test_stall_mid_stream_times_out(
        self, provider: Provider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.stall(STALL, after_headers=True, path=self.provider_id)
        started = time.monotonic()

        _received, error = await collect_until_error(
            provider.stream(self.request(timeout=SHORT_TIMEOUT))
        )

        assert isinstance(error, ProviderTimeout)
        assert time.monotonic() - started < STALL / 2

    async def test_cut_stream_is_a_response_error_after_the_text_so_far(
        self, provider: Provider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.reply("one two three four")
        fake_upstream.cut(after_chunks=2, path=self.provider_id)

        received, error = await collect_until_error(provider.stream(self.request()))

        assert received == [TextDelta("one "), TextDelta("two ")]
        assert isinstance(error, ProviderResponseError)
        assert error.retryable is True

    async def test_stream_without_closing_events_is_a_response_error(
        self, provider: Provider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.truncate(path=self.provider_id)

        received, error = await collect_until_error(provider.stream(self.request()))

        assert all(isinstance(event, TextDelta) for event in received)
        assert isinstance(error, ProviderResponseError)

    async def test_close_delimited_stream_cut_short_is_a_response_error(
        self, provider: Provider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.reply(framing="close")
        fake_upstream.cut(after_chunks=1, path=self.provider_id)

        _received, error = await collect_until_error(provider.stream(self.request()))

        assert isinstance(error, ProviderResponseError)

    async def test_malformed_chunk_is_a_response_error(
        self, provider: Provider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.malformed(after_chunks=1, path=self.provider_id)

        received, error = await collect_until_error(provider.stream(self.request()))

        assert len(received) == 1
        assert isinstance(error, ProviderResponseError)
        assert "malformed" in error.message

    async def test_malformed_json_body_is_a_response_error(
        self, provider: Provider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.malformed(path=self.provider_id)

        with pytest.raises(ProviderResponseError):
            await provider.complete(self.request())

    async def test_failed_attempt_carries_only_reported_usage(
        self, provider: Provider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.reply(input_tokens=21)
        fake_upstream.cut(after_chunks=1, path=self.provider_id)

        _received, error = await collect_until_error(provider.stream(self.request()))

        assert error.usage == self.usage_reported_before_the_cut(input_tokens=21)

    def usage_reported_before_the_cut(self, *, input_tokens: int) -> Usage | None:
        """The usage the upstream had reported when a stream was cut after one chunk."""
        return None


# --- Anthropic ------------------------------------------------------------------------------


class TestAnthropicProvider(UpstreamContractMixin):
    model = "claude-3-haiku-20240307"
    provider_id = "anthropic"

    @pytest.fixture
    def provider(self, anthropic_provider: AnthropicProvider) -> AnthropicProvider:
        return anthropic_provider

    def sent(self, recorded: RecordedRequest) -> Sent:
        body = recorded.json
        return Sent(
            system=body.get("system"),
            messages=[(m["role"], m["content"]) for m in body["messages"]],
            temperature=body.get("temperature"),
            max_tokens=body.get("max_tokens"),
            stream=body.get("stream", False),
        )

    def usage_reported_before_the_cut(self, *, input_tokens: int) -> Usage | None:
        # message_start reported the input (and one output token) before the cut.
        return Usage(input_tokens=input_tokens, output_tokens=1, source="partial")

    async def test_sends_the_key_and_api_version(
        self, provider: AnthropicProvider, fake_upstream: FakeUpstream
    ) -> None:
        await provider.complete(self.request())

        headers = fake_upstream.last_request("anthropic").headers
        # anthropic 2.x sends the API key as a bearer token (1.x used x-api-key).
        assert headers["authorization"] == "Bearer test-key"
        assert headers["anthropic-version"]

    async def test_merges_consecutive_turns_and_keeps_system_apart(
        self, provider: AnthropicProvider, fake_upstream: FakeUpstream
    ) -> None:
        messages = (
            ChatMessage("user", "first"),
            ChatMessage("user", "second"),
            ChatMessage("assistant", "reply"),
            ChatMessage("assistant", "more"),
            ChatMessage("user", "last"),
        )

        await provider.complete(self.request(messages=messages))

        body = fake_upstream.last_request("anthropic").json
        assert body["system"] == SYSTEM
        assert body["messages"] == [
            {"role": "user", "content": "first\n\nsecond"},
            {"role": "assistant", "content": "reply\n\nmore"},
            {"role": "user", "content": "last"},
        ]

    async def test_defaults_max_tokens_and_omits_unset_options(
        self, provider: AnthropicProvider, fake_upstream: FakeUpstream
    ) -> None:
        await provider.complete(self.request(system=None, temperature=None, max_tokens=None))

        body = fake_upstream.last_request("anthropic").json
        assert body["max_tokens"] == 4096
        assert "system" not in body
        assert "temperature" not in body

    async def test_stream_without_message_stop_is_an_error_with_the_reported_usage(
        self, provider: AnthropicProvider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.reply("a b c", input_tokens=11, output_tokens=3)
        fake_upstream.drop_final(path="anthropic")

        received, error = await collect_until_error(provider.stream(self.request()))

        assert len(received) == 3
        assert isinstance(error, ProviderResponseError)
        assert "message_stop" in error.message
        assert error.usage == Usage(input_tokens=11, output_tokens=3, source="partial")

    async def test_error_event_maps_to_its_http_status(
        self, provider: AnthropicProvider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.stream_error(529, message="Overloaded", after_chunks=1, path="anthropic")

        received, error = await collect_until_error(provider.stream(self.request()))

        assert len(received) == 1
        assert isinstance(error, ProviderHTTPError)
        assert (error.status_code, error.message, error.retryable) == (529, "Overloaded", True)

    @pytest.mark.parametrize("streaming", [False, True], ids=["_case_complete", "_case_stream"])
    async def test_the_connection_is_reused_after_the_answer(
        self, provider: AnthropicProvider, fake_upstream: FakeUpstream, streaming: bool
    ) -> None:
        # After message_stop the rest of the body is read, so the connection goes back
        # to the pool instead of being closed: no new TCP connection per request.
        for _ in range(3):
            await self.call(provider, streaming=streaming)

        pool = provider._get_client()._client._transport._pool  # type: ignore[attr-defined]
        assert len(pool.connections) == 1
        assert pool.connections[0].is_idle()
        assert len(fake_upstream.requests) == 3

    @pytest.mark.parametrize(
        ("setting", "value"),
        [("ANTHROPIC_API_KEY", ""), ("RHETOR_PROVIDERS", ["simulated"])],
        ids=["_case_no_key", "_case_disabled"],
    )
    async def test_not_configured_without_key_or_when_disabled(
        self,
        provider: AnthropicProvider,
        fake_upstream: FakeUpstream,
        settings: Any,
        setting: str,
        value: Any,
    ) -> None:
        setattr(settings, setting, value)

        assert provider.is_configured() is False
        assert await provider.is_available() is False
        with pytest.raises(ProviderNotConfigured):
            await provider.complete(self.request())
        assert fake_upstream.requests == []

    async def test_extra_models_come_from_settings(
        self, provider: AnthropicProvider, settings: Any
    ) -> None:
        settings.RHETOR_ANTHROPIC_MODELS = ["claude-next"]

        assert provider.knows_model("claude-next")
        assert [m.context_window for m in provider.models()] == [200_000] * 5


# --- OpenAI ---------------------------------------------------------------------------------


class TestOpenAIProvider(UpstreamContractMixin):
    model = "gpt-4o"
    provider_id = "openai"

    @pytest.fixture
    def provider(self, openai_provider: OpenAIProvider) -> OpenAIProvider:
        return openai_provider

    def sent(self, recorded: RecordedRequest) -> Sent:
        body = recorded.json
        messages = [(m["role"], m["content"]) for m in body["messages"]]
        system = messages.pop(0)[1] if messages and messages[0][0] == "system" else None
        return Sent(
            system=system,
            messages=messages,
            temperature=body.get("temperature"),
            max_tokens=body.get("max_tokens"),
            stream=body.get("stream", False),
        )

    async def test_stream_asks_for_usage_with_the_bearer_key(
        self, provider: OpenAIProvider, fake_upstream: FakeUpstream
    ) -> None:
        await collect(provider.stream(self.request()))

        recorded = fake_upstream.last_request("openai")
        assert recorded.path == "/v1/chat/completions"
        assert recorded.json["stream_options"] == {"include_usage": True}
        assert recorded.json["messages"][0] == {"role": "system", "content": SYSTEM}
        assert recorded.headers["authorization"] == "Bearer test-key"

    async def test_stream_without_usage_chunk_estimates_usage(
        self, provider: OpenAIProvider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.reply("Rome.", stream_usage=False)

        *_deltas, end = await collect(provider.stream(self.request()))

        assert isinstance(end, StreamEnd)
        assert end.usage == Usage(
            input_tokens=estimate_messages_tokens(HISTORY, SYSTEM),
            output_tokens=estimate_tokens("Rome."),
            source="estimate",
        )

    async def test_stream_missing_only_done_marker_is_complete(
        self, provider: OpenAIProvider, fake_upstream: FakeUpstream
    ) -> None:
        # The finish_reason and the usage arrived; [DONE] adds nothing the SDK exposes.
        fake_upstream.reply("Rome.", input_tokens=4, output_tokens=1)
        fake_upstream.drop_final(path="openai")

        *_deltas, end = await collect(provider.stream(self.request()))

        assert isinstance(end, StreamEnd)
        assert end.usage == Usage(input_tokens=4, output_tokens=1)

    async def test_error_chunk_in_stream_is_a_response_error(
        self, provider: OpenAIProvider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.stream_error(500, message="The server had an error", path="openai")

        _received, error = await collect_until_error(provider.stream(self.request()))

        assert isinstance(error, ProviderResponseError)
        assert "The server had an error" in error.message

    async def test_error_chunk_keeps_the_usage_reported_before_it(
        self, provider: OpenAIProvider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.stream_error(500, message="boom", after_chunks=2, path="openai")

        received, error = await collect_until_error(provider.stream(self.request()))

        assert len(received) == 2
        assert isinstance(error, ProviderResponseError)
        assert error.message == "the stream failed: boom"
        assert error.usage is None

    async def test_reset_mid_stream_is_a_response_error_after_the_text_so_far(
        self, provider: OpenAIProvider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.reply("one two three four")
        fake_upstream.reset_connection(after_chunks=2, path="openai")

        received, error = await collect_until_error(provider.stream(self.request()))

        assert received == [TextDelta("one "), TextDelta("two ")]
        assert isinstance(error, ProviderResponseError)
        assert error.message.startswith("the stream was cut")

    @pytest.mark.parametrize("streaming", [False, True], ids=["_case_complete", "_case_stream"])
    async def test_the_connection_is_reused_after_the_answer(
        self, provider: OpenAIProvider, fake_upstream: FakeUpstream, streaming: bool
    ) -> None:
        # After [DONE] the rest of the body is read, so the connection goes back to the
        # pool instead of being closed: no new TCP connection per request.
        for _ in range(3):
            await self.call(provider, streaming=streaming)

        pool = provider._get_client()._client._transport._pool  # type: ignore[attr-defined]
        assert len(pool.connections) == 1
        assert pool.connections[0].is_idle()
        assert len(fake_upstream.requests) == 3

    async def test_not_configured_without_key(
        self, provider: OpenAIProvider, fake_upstream: FakeUpstream, settings: Any
    ) -> None:
        settings.OPENAI_API_KEY = ""

        assert provider.is_configured() is False
        assert await provider.is_available() is False
        with pytest.raises(ProviderNotConfigured):
            await collect(provider.stream(self.request()))
        assert fake_upstream.requests == []

    async def test_extra_models_come_from_settings(
        self, provider: OpenAIProvider, settings: Any
    ) -> None:
        settings.RHETOR_OPENAI_MODELS = ["my-local-model"]

        assert provider.knows_model("my-local-model")
        assert {m.id: m.context_window for m in provider.models()} == {
            "gpt-4": 8192,
            "gpt-4-turbo": 128_000,
            "gpt-4o": 128_000,
            "gpt-3.5-turbo": 16_385,
            "my-local-model": 8192,
        }


# --- Ollama ---------------------------------------------------------------------------------


class TestOllamaProvider(UpstreamContractMixin):
    model = "llama3"
    provider_id = "ollama"

    @pytest.fixture
    def provider(self, ollama_provider: OllamaProvider) -> OllamaProvider:
        return ollama_provider

    def sent(self, recorded: RecordedRequest) -> Sent:
        body = recorded.json
        messages = [(m["role"], m["content"]) for m in body["messages"]]
        system = messages.pop(0)[1] if messages and messages[0][0] == "system" else None
        return Sent(
            system=system,
            messages=messages,
            temperature=body["options"].get("temperature"),
            max_tokens=body["options"].get("num_predict"),
            stream=body["stream"],
        )

    async def test_sends_options_in_ollama_shape(
        self, provider: OllamaProvider, fake_upstream: FakeUpstream
    ) -> None:
        await provider.complete(self.request())

        body = fake_upstream.last_request("/api/chat").json
        assert body["options"] == {"temperature": 0.25, "num_predict": 64}
        assert body["stream"] is False

    async def test_probe_lists_installed_models_and_is_cached(
        self, provider: OllamaProvider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.set_ollama_models(["llama3:latest", "phi3:mini"])
        assert [m.id for m in provider.models()] == ["llama3", "mistral", "codellama"]

        assert await provider.is_available() is True
        assert await provider.is_available() is True

        assert len(fake_upstream.requests_to("/api/tags")) == 1
        assert [(m.id, m.name) for m in provider.models()] == [
            ("llama3:latest", "Llama 3"),
            ("phi3:mini", "phi3:mini"),
        ]
        assert provider.knows_model("llama3")
        assert provider.knows_model("phi3:mini")
        assert not provider.knows_model("mistral:7b")
        assert provider.default_model() == "llama3:latest"

    async def test_probe_failure_is_cached_briefly(
        self, provider: OllamaProvider, fake_upstream: FakeUpstream
    ) -> None:
        fake_upstream.down()
        assert await provider.is_available() is False

        fake_upstream.up()
        assert await provider.is_available() is False  # still within the failure TTL
        provider.probe_ttl_down = 0.0
        provider._checked_until = 0.0
        assert await provider.is_available() is True

    @pytest.mark.parametrize("status", [500, 404])
    async def test_probe_error_status_is_unavailable(
        self, provider: OllamaProvider, fake_upstream: FakeUpstream, status: int
    ) -> None:
        fake_upstream.fail(status, path="/api/tags")

        assert await provider.is_available() is False

    async def test_probe_times_out_quickly(
        self, provider: OllamaProvider, fake_upstream: FakeUpstream
    ) -> None:
        provider.probe_timeout = SHORT_TIMEOUT
        fake_upstream.stall(STALL, path="/api/tags")
        started = time.monotonic()

        assert await provider.is_available() is False
        assert time.monotonic() - started < STALL / 2

    async def test_not_configured_when_disabled_and_never_probes(
        self, provider: OllamaProvider, fake_upstream: FakeUpstream, settings: Any
    ) -> None:
        settings.RHETOR_PROVIDERS = ["simulated"]

        assert provider.is_configured() is False
        assert await provider.is_available() is False
        assert fake_upstream.requests == []

    async def test_model_not_found_carries_ollama_message(
        self, provider: OllamaProvider, fake_upstream: FakeUpstream
    ) -> None:
        message = 'model "llama9" not found, try pulling it first'
        fake_upstream.fail(404, message=message, path="ollama")

        with pytest.raises(ProviderHTTPError) as raised:
            await provider.complete(self.request(model="llama9"))

        assert (raised.value.status_code, raised.value.message) == (404, message)
        assert raised.value.retryable is False


# --- Registry and helpers -------------------------------------------------------------------


async def test_fixtures_point_the_registry_at_the_fake(
    anthropic_provider: AnthropicProvider, fake_upstream: FakeUpstream
) -> None:
    provider = get_provider("anthropic")

    assert provider is anthropic_provider
    await provider.complete(CompletionRequest(model="claude-3-haiku-20240307", messages=HISTORY))
    assert fake_upstream.last_request("anthropic").json["model"] == "claude-3-haiku-20240307"


def test_providers_are_not_configured_by_default() -> None:
    for provider_id in ("anthropic", "openai", "ollama"):
        provider = get_provider(provider_id)
        assert provider is not None
        assert provider.is_configured() is False


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "12"}, 12.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "nan"}, None),
        ({}, None),
    ],
    ids=[
        "_case_seconds",
        "_case_fraction",
        "_case_ms_wins",
        "_case_junk",
        "_case_nan",
        "_case_none",
    ],
)
def test_retry_after_seconds(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(headers) == expected


def test_retry_after_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)

    seconds = retry_after_seconds({"retry-after": when})

    assert seconds is not None
    assert 25 < seconds <= 30

"""Anthropic Claude through the official SDK's Messages API.

One `AsyncAnthropic` per provider instance (the registry keeps one per process), created
lazily with `max_retries=0` (llm/router.py owns retries and fallbacks) and explicit
connect/read timeouts; every call passes its own timeout too. Streams are read event by
event: `message_start` carries the input usage, `content_block_delta` the text,
`message_delta` the output usage and stop reason, `message_stop` the end. A stream that
ends without `message_stop`, or an `error` event, raises a ProviderError, never a silent end.

Completions report the model Rhetor asked for (its routing and price key), not the
snapshot name the API echoes back.

Cheap per request and per event, as the OpenAI adapter: the SDK client sends every request
(auth, anthropic-version, base URL, timeouts, non-2xx statuses as
`anthropic.APIStatusError`) through its raw surface, `client.post(...,
cast_to=httpx2.Response)`, with the body serialized here; the events are read with
llm/providers/sse.py, one `json.loads` each, no pydantic model per event. As the SDK does,
frames without an event name and `ping`s are skipped. After `message_stop` the body's end
is read briefly, so the connection goes back to the pool.
"""

import contextlib
import functools
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import anthropic
import anyio
import httpx2
from django.conf import settings

from llm.providers.base import (
    Completion,
    CompletionRequest,
    LoopBoundClient,
    ModelInfo,
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
from llm.providers.sse import SSEDecoder

PROVIDER_ID = "anthropic"
CONTEXT_WINDOW = 200_000
CATALOGUE = (
    ModelInfo("claude-3-opus-20240229", "Claude 3 Opus", CONTEXT_WINDOW),
    ModelInfo("claude-3-sonnet-20240229", "Claude 3 Sonnet", CONTEXT_WINDOW),
    ModelInfo("claude-3-haiku-20240307", "Claude 3 Haiku", CONTEXT_WINDOW),
    ModelInfo("claude-3-5-sonnet-20240620", "Claude 3.5 Sonnet", CONTEXT_WINDOW),
)
DEFAULT_MODEL = "claude-3-sonnet-20240229"
# The Messages API requires max_tokens.
DEFAULT_MAX_TOKENS = 4096

# Errors that arrive as an `error` event inside a 200 stream carry only their type: map it
# to the status the same error has when it comes as an HTTP response.
ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

# What the SDK and its transport raise for network trouble and bad payloads.
_TRANSPORT_ERRORS = (httpx2.TransportError, OSError, anyio.EndOfStream, anyio.BrokenResourceError)
_CAUGHT = (anthropic.APIError, *_TRANSPORT_ERRORS, ValueError)
# How long to wait, after message_stop, for the end of the body.
_DRAIN_SECONDS = 0.1

# Loading the CA bundle takes ~20 ms; every client of the process shares one context.
_ssl_context = functools.cache(httpx2.create_ssl_context)


def anthropic_messages(request: CompletionRequest) -> tuple[str | None, list[dict[str, str]]]:
    """The request in Anthropic's shape: the system prompt apart (system-role turns are
    appended to it), and consecutive turns of the same role merged into one."""
    system_parts = [request.system] if request.system else []
    merged: list[tuple[str, str]] = []
    for message in request.messages:
        if message.role == "system":
            system_parts.append(message.content)
        elif merged and merged[-1][0] == message.role:
            merged[-1] = (message.role, f"{merged[-1][1]}\n\n{message.content}")
        else:
            merged.append((message.role, message.content))
    turns = [{"role": role, "content": text} for role, text in merged]
    return "\n\n".join(system_parts) or None, turns


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _input_tokens(usage: dict[str, Any]) -> int | None:
    """Input tokens of a usage object: the uncached ones plus cache writes and reads."""
    base = _int(usage.get("input_tokens"))
    if base is None:
        return None
    cached = (
        _int(usage.get("cache_creation_input_tokens")) or 0,
        _int(usage.get("cache_read_input_tokens")) or 0,
    )
    return base + sum(cached)


def _body(request: CompletionRequest, *, stream: bool) -> bytes:
    """The request body as the SDK would serialize it (compact UTF-8 JSON, no NaN)."""
    system, messages = anthropic_messages(request)
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    if system:
        body["system"] = system
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if stream:
        body["stream"] = True
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


async def _drain(chunks: AsyncGenerator[bytes, None]) -> None:
    """Read what follows message_stop (normally only the body's end), briefly, so that the
    connection goes back to the pool instead of being closed."""
    with contextlib.suppress(*_TRANSPORT_ERRORS), anyio.move_on_after(_DRAIN_SECONDS):
        async for _ in chunks:
            pass


class _StreamFailed(Exception):
    """An `error` event inside a 200 stream; `data` is its raw payload."""

    def __init__(self, data: str, headers: httpx2.Headers) -> None:
        super().__init__(data)
        self.headers = headers
        try:
            body: object = json.loads(data)
        except ValueError:
            body = data
        error = _dict(body).get("error")
        self.api_message = _dict(error).get("message")
        self.type = _dict(error).get("type")
        self.text = data.strip()[:500] or "An error occurred during streaming"


class AnthropicProvider:
    id = PROVIDER_ID
    name = "Anthropic Claude"

    def __init__(self) -> None:
        self._clients = LoopBoundClient(self._build_client, lambda c: c.close())

    # --- Configuration and catalogue ------------------------------------------------------

    def is_configured(self) -> bool:
        return self.id in settings.RHETOR_PROVIDERS and bool(settings.ANTHROPIC_API_KEY)

    async def is_available(self) -> bool:
        return self.is_configured()

    def models(self) -> list[ModelInfo]:
        known = list(CATALOGUE)
        ids = {m.id for m in known}
        for model_id in settings.RHETOR_ANTHROPIC_MODELS:
            if model_id and model_id not in ids:
                known.append(ModelInfo(model_id, model_id, CONTEXT_WINDOW))
                ids.add(model_id)
        return known

    def default_model(self) -> str:
        return DEFAULT_MODEL

    def knows_model(self, model: str) -> bool:
        return any(m.id == model for m in self.models())

    # --- Client ---------------------------------------------------------------------------

    def _get_client(self) -> anthropic.AsyncAnthropic:
        """The pooled client of the running event loop, created on first use."""
        if not self.is_configured():
            raise ProviderNotConfigured(self.id)
        return self._clients.get()

    def _build_client(self) -> anthropic.AsyncAnthropic:
        # A client is bound to the loop it first ran on; another loop (a new test, a
        # second asyncio.run) gets its own.
        timeout = anthropic.Timeout(
            settings.RHETOR_PROVIDER_TIMEOUT, connect=settings.RHETOR_CONNECT_TIMEOUT
        )
        return anthropic.AsyncAnthropic(
            api_key=settings.ANTHROPIC_API_KEY,
            base_url=settings.ANTHROPIC_BASE_URL or None,
            max_retries=0,
            timeout=timeout,
            http_client=anthropic.DefaultAsyncHttpxClient(timeout=timeout, verify=_ssl_context()),
        )

    async def aclose(self) -> None:
        await self._clients.aclose()

    @staticmethod
    def _timeout(request: CompletionRequest) -> anthropic.Timeout:
        read = request.timeout or settings.RHETOR_PROVIDER_TIMEOUT
        return anthropic.Timeout(read, connect=min(settings.RHETOR_CONNECT_TIMEOUT, read))

    async def _post(self, request: CompletionRequest, *, stream: bool) -> httpx2.Response:
        """POST /v1/messages through the SDK client, with the body already serialized and
        the raw response back. With `stream`, the body is not read yet."""
        client = self._get_client()
        return await client.post(
            "/v1/messages",
            cast_to=httpx2.Response,
            content=_body(request, stream=stream),
            options={"timeout": self._timeout(request)},
            stream=stream,
        )

    # --- Calls ----------------------------------------------------------------------------

    async def complete(self, request: CompletionRequest) -> Completion:
        try:
            response = await self._post(request, stream=False)
            message = json.loads(response.content)
        except _CAUGHT as exc:
            raise self._error(exc, in_stream=False) from exc
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            raise ProviderResponseError(self.id, "the response has no content")
        text = "".join(
            block["text"]
            for block in content
            if isinstance(block, dict)
            and block.get("type") == "text"
            and isinstance(block.get("text"), str)
        )
        usage = _dict(message.get("usage"))
        input_tokens, output_tokens = _input_tokens(usage), _int(usage.get("output_tokens"))
        if input_tokens is None or output_tokens is None:
            raise ProviderResponseError(self.id, "the response has no usage")
        stop_reason = message.get("stop_reason")
        return Completion(
            text=text,
            usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens),
            model=request.model,
            finish_reason=stop_reason if isinstance(stop_reason, str) else None,
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        try:
            response = await self._post(request, stream=True)
        except _CAUGHT as exc:
            raise self._error(exc, in_stream=False) from exc
        input_tokens: int | None = None
        output_tokens: int | None = None
        stop_reason: str | None = None
        stopped = ended = False

        def partial() -> Usage | None:
            if input_tokens is None:
                return None
            return Usage(input_tokens, output_tokens or 0, source="partial")

        chunks = response.aiter_bytes()
        decoder = SSEDecoder()
        try:
            while not (stopped or ended):
                try:
                    events = decoder.feed(await anext(chunks))
                except StopAsyncIteration:
                    events = decoder.finish()
                    ended = True
                for sse in events:
                    name = sse.event
                    if name is None or name == "ping":
                        continue
                    if name == "error":
                        raise _StreamFailed(sse.data, response.headers)
                    if not sse.data:
                        continue
                    event = json.loads(sse.data)
                    if not isinstance(event, dict):
                        raise ValueError(f"an event is not an object: {sse.data[:100]}")
                    kind = event.get("type")
                    if kind == "content_block_delta":
                        delta = _dict(event.get("delta"))
                        text = delta.get("text")
                        if delta.get("type") == "text_delta" and isinstance(text, str) and text:
                            yield TextDelta(text)
                    elif kind == "message_start":
                        usage = _dict(_dict(event.get("message")).get("usage"))
                        input_tokens = _input_tokens(usage)
                        output_tokens = _int(usage.get("output_tokens"))
                    elif kind == "message_delta":
                        usage = _dict(event.get("usage"))
                        output_tokens = _int(usage.get("output_tokens")) or output_tokens
                        # message_delta may restate the cumulative input (server tools).
                        if _int(usage.get("input_tokens")) is not None:
                            input_tokens = _input_tokens(usage)
                        reason = _dict(event.get("delta")).get("stop_reason")
                        stop_reason = reason if isinstance(reason, str) else None
                    elif kind == "message_stop":
                        stopped = True
                        break
            if stopped:
                await _drain(chunks)
        except (*_CAUGHT, _StreamFailed) as exc:
            raise self._error(exc, in_stream=True, usage=partial()) from exc
        finally:
            await chunks.aclose()
            await response.aclose()
        if not stopped:
            raise ProviderResponseError(
                self.id, "the stream ended without message_stop", usage=partial()
            )
        if input_tokens is None or output_tokens is None:
            raise ProviderResponseError(self.id, "the stream reported no usage", usage=partial())
        yield StreamEnd(
            usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens),
            model=request.model,
            finish_reason=stop_reason,
        )

    # --- Errors ---------------------------------------------------------------------------

    def _error(
        self, exc: Exception, *, in_stream: bool, usage: Usage | None = None
    ) -> ProviderError:
        """The typed error for what the SDK raised. `in_stream`: the response had begun,
        so a broken connection is a cut stream rather than an unreachable upstream."""
        error: ProviderError
        if isinstance(exc, _StreamFailed):
            error_type = exc.type if isinstance(exc.type, str) else ""
            message = exc.api_message if isinstance(exc.api_message, str) else None
            return ProviderHTTPError(
                self.id,
                ERROR_TYPE_STATUS.get(error_type, 500),
                message or exc.text,
                retry_after=retry_after_seconds(exc.headers),
                usage=usage,
            )
        if isinstance(exc, anthropic.APIStatusError):
            return ProviderHTTPError(
                self.id,
                exc.status_code,
                exc.api_message or _body_text(exc.body) or str(exc),
                retry_after=retry_after_seconds(exc.response.headers),
                usage=usage,
            )
        if isinstance(exc, (anthropic.APITimeoutError, httpx2.TimeoutException)):
            error = ProviderTimeout(self.id)
        elif isinstance(exc, (anthropic.APIConnectionError, *_TRANSPORT_ERRORS)):
            detail = _detail(exc)
            if in_stream:
                error = ProviderResponseError(self.id, f"the stream was cut: {detail}")
            else:
                error = ProviderConnectionError(self.id, f"cannot reach Anthropic: {detail}")
        else:
            error = ProviderResponseError(self.id, f"malformed response: {_detail(exc)}")
        error.usage = usage
        return error


def _body_text(body: object) -> str | None:
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    return None


def _detail(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return str(cause) or type(cause).__name__

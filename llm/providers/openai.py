"""OpenAI (and OpenAI-compatible servers) through the official SDK's chat completions.

One `AsyncOpenAI` per provider instance (the registry keeps one per process), created
lazily with `max_retries=0` (llm/router.py owns retries and fallbacks) and explicit
connect/read timeouts; every call passes its own timeout too. The system prompt is the
first `system` message. Streams ask for `stream_options={"include_usage": True}`, so the
last chunk carries exact usage; a compatible server that sends none gets an estimate
(`Usage(source="estimate")`). A stream that ends without a finish_reason raises
ProviderResponseError, never a silent end.

Completions report the model Rhetor asked for (its routing and price key), not the
snapshot name the API echoes back.

Cheap per request and per chunk: the SDK client still sends every request (auth, base
URL, headers, timeouts, non-2xx statuses as `openai.APIStatusError`), but through its
documented raw surface, `client.post(..., cast_to=httpx2.Response)`, with the body
serialized here: no typed-params transform per call and no pydantic model per answer or
chunk. The SSE frames are read with llm/providers/sse.py and each one is a `json.loads`.
What the SDK's own stream did is kept: `[DONE]` ends the stream (then the body's end is
read briefly, so the connection is reused), and an `{"error": ...}` frame in a 200 stream
is an error. bench/provider_stream.py measures it.
"""

import contextlib
import functools
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import anyio
import httpx2
import openai
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
from rhetor_site.tokens import estimate_messages_tokens, estimate_tokens

PROVIDER_ID = "openai"
CATALOGUE = (
    ModelInfo("gpt-4", "GPT-4", 8192),
    ModelInfo("gpt-4-turbo", "GPT-4 Turbo", 128_000),
    ModelInfo("gpt-4o", "GPT-4o", 128_000),
    ModelInfo("gpt-3.5-turbo", "GPT-3.5 Turbo", 16_385),
)
DEFAULT_MODEL = "gpt-4o"

_TRANSPORT_ERRORS = (httpx2.TransportError, OSError, anyio.EndOfStream, anyio.BrokenResourceError)
_CAUGHT = (openai.OpenAIError, *_TRANSPORT_ERRORS, ValueError)
_DONE = "[DONE]"
# How long to wait, after [DONE], for the end of the body (the SDK waits as long).
_DRAIN_SECONDS = 0.1

# Loading the CA bundle takes ~20 ms; every client of the process shares one context.
_ssl_context = functools.cache(httpx2.create_ssl_context)


def openai_messages(request: CompletionRequest) -> list[dict[str, str]]:
    """The system prompt as the first `system` message, then the turns in order."""
    messages = [{"role": "system", "content": request.system}] if request.system else []
    messages += [{"role": m.role, "content": m.content} for m in request.messages]
    return messages


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _usage(usage: object) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    prompt = _int(usage.get("prompt_tokens"))
    completion = _int(usage.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    return Usage(input_tokens=prompt, output_tokens=completion)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _body(request: CompletionRequest, *, stream: bool) -> bytes:
    """The request body as the SDK would serialize it (compact UTF-8 JSON, no NaN)."""
    body: dict[str, Any] = {"model": request.model, "messages": openai_messages(request)}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


async def _drain(chunks: AsyncGenerator[bytes, None]) -> None:
    """Read what follows [DONE] (normally only the body's end), briefly, so that the
    connection goes back to the pool instead of being closed (as the SDK does)."""
    with contextlib.suppress(*_TRANSPORT_ERRORS), anyio.move_on_after(_DRAIN_SECONDS):
        async for _ in chunks:
            pass


class _StreamFailed(Exception):
    """An `{"error": ...}` object sent inside a 200 stream."""

    def __init__(self, body: object) -> None:
        super().__init__(body)
        self.body = body


def _estimate(request: CompletionRequest, text: str) -> Usage:
    return Usage(
        input_tokens=estimate_messages_tokens(request.messages, request.system),
        output_tokens=estimate_tokens(text),
        source="estimate",
    )


class OpenAIProvider:
    id = PROVIDER_ID
    name = "OpenAI"

    def __init__(self) -> None:
        self._clients = LoopBoundClient(self._build_client, lambda c: c.close())

    # --- Configuration and catalogue ------------------------------------------------------

    def is_configured(self) -> bool:
        return self.id in settings.RHETOR_PROVIDERS and bool(settings.OPENAI_API_KEY)

    async def is_available(self) -> bool:
        return self.is_configured()

    def models(self) -> list[ModelInfo]:
        known = list(CATALOGUE)
        ids = {m.id for m in known}
        for model_id in settings.RHETOR_OPENAI_MODELS:
            if model_id and model_id not in ids:
                known.append(ModelInfo(model_id, model_id))
                ids.add(model_id)
        return known

    def default_model(self) -> str:
        return DEFAULT_MODEL

    def knows_model(self, model: str) -> bool:
        return any(m.id == model for m in self.models())

    # --- Client ---------------------------------------------------------------------------

    def _get_client(self) -> openai.AsyncOpenAI:
        """The pooled client of the running event loop, created on first use."""
        if not self.is_configured():
            raise ProviderNotConfigured(self.id)
        return self._clients.get()

    def _build_client(self) -> openai.AsyncOpenAI:
        # A client is bound to the loop it first ran on; another loop (a new test, a
        # second asyncio.run) gets its own.
        timeout = openai.Timeout(
            settings.RHETOR_PROVIDER_TIMEOUT, connect=settings.RHETOR_CONNECT_TIMEOUT
        )
        return openai.AsyncOpenAI(
            api_key=settings.OPENAI_API_KEY,
            base_url=settings.OPENAI_BASE_URL or None,
            max_retries=0,
            timeout=timeout,
            http_client=openai.DefaultAsyncHttpxClient(timeout=timeout, verify=_ssl_context()),
        )

    async def aclose(self) -> None:
        await self._clients.aclose()

    @staticmethod
    def _timeout(request: CompletionRequest) -> openai.Timeout:
        read = request.timeout or settings.RHETOR_PROVIDER_TIMEOUT
        return openai.Timeout(read, connect=min(settings.RHETOR_CONNECT_TIMEOUT, read))

    async def _post(self, request: CompletionRequest, *, stream: bool) -> httpx2.Response:
        """POST /chat/completions through the SDK client (auth, base URL, headers,
        timeouts, and non-2xx statuses raised as `openai.APIStatusError`), with the body
        already serialized and the raw response back: no typed-params transform and no
        pydantic model per answer or chunk. With `stream`, the body is not read yet."""
        client = self._get_client()
        return await client.post(
            "/chat/completions",
            cast_to=httpx2.Response,
            content=_body(request, stream=stream),
            options={"timeout": self._timeout(request), "security": {"bearer_auth": True}},
            stream=stream,
        )

    # --- Calls ----------------------------------------------------------------------------

    async def complete(self, request: CompletionRequest) -> Completion:
        try:
            response = await self._post(request, stream=False)
            completion = json.loads(response.content)
        except _CAUGHT as exc:
            raise self._error(exc, in_stream=False) from exc
        choices = completion.get("choices") if isinstance(completion, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ProviderResponseError(self.id, "the response has no choices")
        choice = choices[0]
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if text is not None and not isinstance(text, str):
            raise ProviderResponseError(self.id, "the response message has no text")
        text = text or ""
        return Completion(
            text=text,
            usage=_usage(completion.get("usage")) or _estimate(request, text),
            model=request.model,
            finish_reason=_str(choice.get("finish_reason")),
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        try:
            response = await self._post(request, stream=True)
        except _CAUGHT as exc:
            raise self._error(exc, in_stream=False) from exc
        usage: Usage | None = None
        finish_reason: str | None = None
        pieces: list[str] = []
        chunks = response.aiter_bytes()
        decoder = SSEDecoder()
        done = ended = False
        try:
            while not (done or ended):
                try:
                    events = decoder.feed(await anext(chunks))
                except StopAsyncIteration:
                    events = decoder.finish()
                    ended = True
                for event in events:
                    if event.data.startswith(_DONE):
                        done = True
                        break
                    chunk = json.loads(event.data)
                    if not isinstance(chunk, dict):
                        raise ValueError(f"a stream frame is not an object: {event.data[:100]}")
                    if chunk.get("error"):
                        raise _StreamFailed(chunk["error"])
                    if chunk.get("usage"):
                        usage = _usage(chunk["usage"]) or usage
                    for choice in chunk.get("choices") or ():
                        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                            continue
                        delta = choice.get("delta")
                        text = delta.get("content") if isinstance(delta, dict) else None
                        if isinstance(text, str) and text:
                            pieces.append(text)
                            yield TextDelta(text)
                        finish_reason = _str(choice.get("finish_reason")) or finish_reason
            if done:
                await _drain(chunks)
        except (*_CAUGHT, _StreamFailed) as exc:
            raise self._error(exc, in_stream=True, usage=usage) from exc
        finally:
            await chunks.aclose()
            await response.aclose()
        if finish_reason is None:
            raise ProviderResponseError(self.id, "the stream ended without a finish_reason")
        yield StreamEnd(
            usage=usage or _estimate(request, "".join(pieces)),
            model=request.model,
            finish_reason=finish_reason,
        )

    # --- Errors ---------------------------------------------------------------------------

    def _error(
        self, exc: Exception, *, in_stream: bool, usage: Usage | None = None
    ) -> ProviderError:
        """The typed error for what the SDK raised. `in_stream`: the response had begun,
        so a broken connection is a cut stream rather than an unreachable upstream."""
        error: ProviderError
        if isinstance(exc, openai.APIStatusError):
            return ProviderHTTPError(
                self.id,
                exc.status_code,
                _body_message(exc.body) or str(exc),
                retry_after=retry_after_seconds(exc.response.headers),
                usage=usage,
            )
        if isinstance(exc, (openai.APITimeoutError, httpx2.TimeoutException)):
            error = ProviderTimeout(self.id)
        elif isinstance(exc, (openai.APIConnectionError, *_TRANSPORT_ERRORS)):
            detail = _detail(exc)
            if in_stream:
                error = ProviderResponseError(self.id, f"the stream was cut: {detail}")
            else:
                error = ProviderConnectionError(self.id, f"cannot reach OpenAI: {detail}")
        elif isinstance(exc, _StreamFailed):
            # An error object sent as a stream chunk.
            message = _body_message(exc.body) or "An error occurred during streaming"
            error = ProviderResponseError(self.id, f"the stream failed: {message}")
        else:
            error = ProviderResponseError(self.id, f"malformed response: {_detail(exc)}")
        error.usage = usage
        return error


def _body_message(body: object) -> str | None:
    """The provider's own message from an error body ({"message": ...} or plain text)."""
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
        inner = body.get("error")
        if isinstance(inner, dict | str):
            return _body_message(inner)
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    return None


def _detail(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return str(cause) or type(cause).__name__

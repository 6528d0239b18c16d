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
"""

import functools
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import openai
from django.conf import settings
from openai.types.chat import ChatCompletionMessageParam

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
from llm.tokens import estimate_messages_tokens, estimate_tokens

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

# Loading the CA bundle takes ~20 ms; every client of the process shares one context.
_ssl_context = functools.cache(httpx2.create_ssl_context)


def openai_messages(request: CompletionRequest) -> list[ChatCompletionMessageParam]:
    """The system prompt as the first `system` message, then the turns in order."""
    messages: list[ChatCompletionMessageParam] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    for message in request.messages:
        if message.role == "assistant":
            messages.append({"role": "assistant", "content": message.content})
        elif message.role == "system":
            messages.append({"role": "system", "content": message.content})
        else:
            messages.append({"role": "user", "content": message.content})
    return messages


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _usage(usage: object) -> Usage | None:
    prompt = _int(getattr(usage, "prompt_tokens", None))
    completion = _int(getattr(usage, "completion_tokens", None))
    if prompt is None or completion is None:
        return None
    return Usage(input_tokens=prompt, output_tokens=completion)


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

    def _params(self, request: CompletionRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": request.model,
            "messages": openai_messages(request),
            "timeout": self._timeout(request),
        }
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.max_tokens is not None:
            params["max_tokens"] = request.max_tokens
        return params

    # --- Calls ----------------------------------------------------------------------------

    async def complete(self, request: CompletionRequest) -> Completion:
        client = self._get_client()
        try:
            completion = await client.chat.completions.create(**self._params(request))
        except _CAUGHT as exc:
            raise self._error(exc, in_stream=False) from exc
        choices = getattr(completion, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise ProviderResponseError(self.id, "the response has no choices")
        choice = choices[0]
        text = getattr(getattr(choice, "message", None), "content", None)
        if text is not None and not isinstance(text, str):
            raise ProviderResponseError(self.id, "the response message has no text")
        text = text or ""
        return Completion(
            text=text,
            usage=_usage(getattr(completion, "usage", None)) or _estimate(request, text),
            model=request.model,
            finish_reason=getattr(choice, "finish_reason", None),
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        client = self._get_client()
        try:
            chunks = await client.chat.completions.create(
                **self._params(request), stream=True, stream_options={"include_usage": True}
            )
        except _CAUGHT as exc:
            raise self._error(exc, in_stream=False) from exc
        usage: Usage | None = None
        finish_reason: str | None = None
        pieces: list[str] = []
        try:
            async for chunk in chunks:
                usage = _usage(getattr(chunk, "usage", None)) or usage
                for choice in getattr(chunk, "choices", None) or ():
                    if getattr(choice, "index", 0) != 0:
                        continue
                    text = getattr(getattr(choice, "delta", None), "content", None)
                    if isinstance(text, str) and text:
                        pieces.append(text)
                        yield TextDelta(text)
                    finish_reason = getattr(choice, "finish_reason", None) or finish_reason
        except _CAUGHT as exc:
            raise self._error(exc, in_stream=True, usage=usage) from exc
        finally:
            await chunks.close()
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
        elif isinstance(exc, openai.APIError) and in_stream:
            # An error object sent as a stream chunk.
            message = _body_message(exc.body) or exc.message
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

"""OpenAI (and OpenAI-compatible servers) through the official SDK's chat completions.

The client, catalogue, calls and error mapping are `SDKProvider`'s (llm/providers/sdk.py);
this module holds the wire format. The system prompt is the first `system` message.
Streams ask for `stream_options={"include_usage": True}`, so the last chunk carries exact
usage; a compatible server that sends none gets an estimate (`Usage(source="estimate")`).
A stream that ends without a finish_reason raises ProviderResponseError, never a silent
end. What the SDK's own stream did is kept: `[DONE]` ends the stream, and an
`{"error": ...}` frame in a 200 stream is an error.
"""

import json
from typing import Any

import httpx2
import openai

from llm.providers.base import (
    Completion,
    CompletionRequest,
    ModelInfo,
    ProviderError,
    ProviderResponseError,
    StreamEnd,
    Usage,
)
from llm.providers.sdk import SDKProvider, StatusError, StreamFailed, StreamReader, as_int
from llm.providers.sse import SSEEvent
from rhetor_site.tokens import estimate_messages_tokens, estimate_tokens

PROVIDER_ID = "openai"
CATALOGUE = (
    ModelInfo("gpt-4", "GPT-4", 8192),
    ModelInfo("gpt-4-turbo", "GPT-4 Turbo", 128_000),
    ModelInfo("gpt-4o", "GPT-4o", 128_000),
    ModelInfo("gpt-3.5-turbo", "GPT-3.5 Turbo", 16_385),
)
DEFAULT_MODEL = "gpt-4o"

_DONE = "[DONE]"


def openai_messages(request: CompletionRequest) -> list[dict[str, str]]:
    """The system prompt as the first `system` message, then the turns in order."""
    messages = [{"role": "system", "content": request.system}] if request.system else []
    messages += [{"role": m.role, "content": m.content} for m in request.messages]
    return messages


def _usage(usage: object) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    prompt = as_int(usage.get("prompt_tokens"))
    completion = as_int(usage.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    return Usage(input_tokens=prompt, output_tokens=completion)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _estimate(request: CompletionRequest, text: str) -> Usage:
    return Usage(
        input_tokens=estimate_messages_tokens(request.messages, request.system),
        output_tokens=estimate_tokens(text),
        source="estimate",
    )


class _ChunkStream(StreamReader):
    """A chat-completions stream: `chat.completion.chunk` frames, then `[DONE]`."""

    def __init__(self, provider_id: str, request: CompletionRequest) -> None:
        super().__init__(provider_id, request)
        self._usage: Usage | None = None
        self._finish_reason: str | None = None
        self._pieces: list[str] = []

    def event(self, sse: SSEEvent) -> str | None:
        if sse.data.startswith(_DONE):
            self.done = True
            return None
        chunk = json.loads(sse.data)
        if not isinstance(chunk, dict):
            raise ValueError(f"a stream frame is not an object: {sse.data[:100]}")
        if chunk.get("error"):
            raise StreamFailed(chunk["error"])
        if chunk.get("usage"):
            self._usage = _usage(chunk["usage"]) or self._usage
        text: str | None = None
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str) and content:
                self._pieces.append(content)
                text = content if text is None else text + content
            self._finish_reason = _str(choice.get("finish_reason")) or self._finish_reason
        return text

    def usage(self) -> Usage | None:
        return self._usage

    def end(self) -> StreamEnd:
        if self._finish_reason is None:
            raise ProviderResponseError(
                self.provider_id, "the stream ended without a finish_reason"
            )
        return StreamEnd(
            usage=self._usage or _estimate(self.request, "".join(self._pieces)),
            model=self.request.model,
            finish_reason=self._finish_reason,
        )


class OpenAIProvider(SDKProvider[openai.AsyncOpenAI]):
    id = PROVIDER_ID
    name = "OpenAI"
    vendor = "OpenAI"
    catalogue = CATALOGUE
    default_model_id = DEFAULT_MODEL
    api_key_setting = "OPENAI_API_KEY"
    base_url_setting = "OPENAI_BASE_URL"
    extra_models_setting = "RHETOR_OPENAI_MODELS"
    client_class = openai.AsyncOpenAI
    http_client_class = openai.DefaultAsyncHttpxClient
    api_errors = (openai.OpenAIError,)
    status_error = openai.APIStatusError
    timeout_error = openai.APITimeoutError
    connection_error = openai.APIConnectionError
    path = "/chat/completions"
    request_options = {"security": {"bearer_auth": True}}
    stream_reader = _ChunkStream

    def _body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.model, "messages": openai_messages(request)}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def _completion(self, request: CompletionRequest, answer: Any) -> Completion:
        choices = answer.get("choices") if isinstance(answer, dict) else None
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
            usage=_usage(answer.get("usage")) or _estimate(request, text),
            model=request.model,
            finish_reason=_str(choice.get("finish_reason")),
        )

    def _status_message(self, exc: StatusError) -> str:
        return _body_message(exc.body) or str(exc)

    def _stream_error(self, body: object, headers: httpx2.Headers) -> ProviderError:
        # An error object sent as a stream chunk.
        message = _body_message(body) or "An error occurred during streaming"
        return ProviderResponseError(self.id, f"the stream failed: {message}")


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

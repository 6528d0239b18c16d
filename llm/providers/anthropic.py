"""Anthropic Claude through the official SDK's Messages API.

The client, catalogue, calls and error mapping are `SDKProvider`'s (llm/providers/sdk.py);
this module holds the wire format. Streams are read event by event: `message_start`
carries the input usage, `content_block_delta` the text, `message_delta` the output usage
and stop reason, `message_stop` the end. As the SDK does, frames without an event name and
`ping`s are skipped. A stream that ends without `message_stop`, or an `error` event,
raises a ProviderError, never a silent end.
"""

import json
from typing import Any

import anthropic
import httpx2

from llm.providers.base import (
    Completion,
    CompletionRequest,
    ModelInfo,
    ProviderError,
    ProviderHTTPError,
    ProviderResponseError,
    StreamEnd,
    Usage,
    retry_after_seconds,
)
from llm.providers.sdk import SDKProvider, StatusError, StreamFailed, StreamReader, as_int
from llm.providers.sse import SSEEvent

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


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _input_tokens(usage: dict[str, Any]) -> int | None:
    """Input tokens of a usage object: the uncached ones plus cache writes and reads."""
    base = as_int(usage.get("input_tokens"))
    if base is None:
        return None
    cached = (
        as_int(usage.get("cache_creation_input_tokens")) or 0,
        as_int(usage.get("cache_read_input_tokens")) or 0,
    )
    return base + sum(cached)


class _MessageStream(StreamReader):
    """A Messages API stream: named events, `message_stop` the last."""

    def __init__(self, provider_id: str, request: CompletionRequest) -> None:
        super().__init__(provider_id, request)
        self._input_tokens: int | None = None
        self._output_tokens: int | None = None
        self._stop_reason: str | None = None

    def event(self, sse: SSEEvent) -> str | None:
        name = sse.event
        if name is None or name == "ping":
            return None
        if name == "error":
            raise StreamFailed(sse.data)
        if not sse.data:
            return None
        event = json.loads(sse.data)
        if not isinstance(event, dict):
            raise ValueError(f"an event is not an object: {sse.data[:100]}")
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = _dict(event.get("delta"))
            text = delta.get("text")
            if delta.get("type") == "text_delta" and isinstance(text, str) and text:
                return text
        elif kind == "message_start":
            usage = _dict(_dict(event.get("message")).get("usage"))
            self._input_tokens = _input_tokens(usage)
            self._output_tokens = as_int(usage.get("output_tokens"))
        elif kind == "message_delta":
            usage = _dict(event.get("usage"))
            self._output_tokens = as_int(usage.get("output_tokens")) or self._output_tokens
            # message_delta may restate the cumulative input (server tools).
            if as_int(usage.get("input_tokens")) is not None:
                self._input_tokens = _input_tokens(usage)
            reason = _dict(event.get("delta")).get("stop_reason")
            self._stop_reason = reason if isinstance(reason, str) else None
        elif kind == "message_stop":
            self.done = True
        return None

    def usage(self) -> Usage | None:
        """The usage so far, as `partial`: the input once message_start reported it."""
        if self._input_tokens is None:
            return None
        return Usage(self._input_tokens, self._output_tokens or 0, source="partial")

    def end(self) -> StreamEnd:
        if not self.done:
            raise ProviderResponseError(
                self.provider_id, "the stream ended without message_stop", usage=self.usage()
            )
        if self._input_tokens is None or self._output_tokens is None:
            raise ProviderResponseError(
                self.provider_id, "the stream reported no usage", usage=self.usage()
            )
        return StreamEnd(
            usage=Usage(input_tokens=self._input_tokens, output_tokens=self._output_tokens),
            model=self.request.model,
            finish_reason=self._stop_reason,
        )


class AnthropicProvider(SDKProvider[anthropic.AsyncAnthropic]):
    id = PROVIDER_ID
    name = "Anthropic Claude"
    vendor = "Anthropic"
    catalogue = CATALOGUE
    default_model_id = DEFAULT_MODEL
    extra_context_window = CONTEXT_WINDOW
    api_key_setting = "ANTHROPIC_API_KEY"
    base_url_setting = "ANTHROPIC_BASE_URL"
    extra_models_setting = "RHETOR_ANTHROPIC_MODELS"
    client_class = anthropic.AsyncAnthropic
    http_client_class = anthropic.DefaultAsyncHttpxClient
    api_errors = (anthropic.APIError,)
    status_error = anthropic.APIStatusError
    timeout_error = anthropic.APITimeoutError
    connection_error = anthropic.APIConnectionError
    path = "/v1/messages"
    stream_reader = _MessageStream

    def _body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
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
        return body

    def _completion(self, request: CompletionRequest, answer: Any) -> Completion:
        content = answer.get("content") if isinstance(answer, dict) else None
        if not isinstance(content, list):
            raise ProviderResponseError(self.id, "the response has no content")
        text = "".join(
            block["text"]
            for block in content
            if isinstance(block, dict)
            and block.get("type") == "text"
            and isinstance(block.get("text"), str)
        )
        usage = _dict(answer.get("usage"))
        input_tokens, output_tokens = _input_tokens(usage), as_int(usage.get("output_tokens"))
        if input_tokens is None or output_tokens is None:
            raise ProviderResponseError(self.id, "the response has no usage")
        stop_reason = answer.get("stop_reason")
        return Completion(
            text=text,
            usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens),
            model=request.model,
            finish_reason=stop_reason if isinstance(stop_reason, str) else None,
        )

    def _status_message(self, exc: StatusError) -> str:
        api_message = exc.api_message if isinstance(exc, anthropic.APIStatusError) else None
        return api_message or _body_text(exc.body) or str(exc)

    def _stream_error(self, body: object, headers: httpx2.Headers) -> ProviderError:
        # `body` is the raw payload of the `error` event; the status is its type's.
        data = body if isinstance(body, str) else ""
        try:
            payload: object = json.loads(data)
        except ValueError:
            payload = data
        error = _dict(_dict(payload).get("error"))
        error_type, message = error.get("type"), error.get("message")
        return ProviderHTTPError(
            self.id,
            ERROR_TYPE_STATUS.get(error_type if isinstance(error_type, str) else "", 500),
            message
            if isinstance(message, str) and message
            else data.strip()[:500] or "An error occurred during streaming",
            retry_after=retry_after_seconds(headers),
        )


def _body_text(body: object) -> str | None:
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    return None

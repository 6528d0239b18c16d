"""The one interface every provider implements, and the typed values that cross it.

Providers never return error dicts: every failure is a `ProviderError` subclass that the
router classifies (retryable or terminal) without looking at strings.
"""

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Generic, Literal, Protocol, TypeVar, runtime_checkable

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class ModelInfo:
    id: str
    name: str
    context_window: int = 8192


@dataclass(frozen=True)
class CompletionRequest:
    """What a provider is asked to do. `system` is the joined system prompt (or None);
    `messages` holds only user/assistant turns, oldest first, the last one the user's."""

    model: str
    messages: tuple[ChatMessage, ...]
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    # Where the counts come from: "provider" (reported upstream), "estimate" or "partial".
    source: Literal["provider", "estimate", "partial"] = "provider"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class TextDelta:
    """A piece of generated text."""

    text: str


@dataclass(frozen=True)
class StreamEnd:
    """The last event of every successful stream: exact usage and why generation stopped."""

    usage: Usage
    model: str
    finish_reason: str | None = None


StreamEvent = TextDelta | StreamEnd


@dataclass(frozen=True)
class Completion:
    text: str
    usage: Usage
    model: str
    finish_reason: str | None = None


# --- Errors -----------------------------------------------------------------------------


@dataclass
class ProviderError(Exception):
    """A provider call failed. `retryable` tells the router whether another attempt or a
    fallback model may succeed (connection errors, timeouts, 408, 429, 5xx)."""

    provider: str
    message: str
    status_code: int | None = None
    retryable: bool = False
    retry_after: float | None = None
    # Usage the provider reported for the failed attempt, if any (charged, nothing else is).
    usage: Usage | None = field(default=None)

    def __str__(self) -> str:
        status = f" (HTTP {self.status_code})" if self.status_code else ""
        return f"{self.provider}: {self.message}{status}"


class ProviderNotConfigured(ProviderError):
    """The provider has no API key / is disabled: it is unavailable, try a fallback."""

    def __init__(self, provider: str, message: str = "provider is not configured") -> None:
        super().__init__(provider=provider, message=message, retryable=True)


class ProviderConnectionError(ProviderError):
    """The upstream could not be reached, or the connection broke."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(provider=provider, message=message, retryable=True)


class ProviderTimeout(ProviderError):
    def __init__(self, provider: str, message: str = "request to the provider timed out") -> None:
        super().__init__(provider=provider, message=message, status_code=None, retryable=True)


class ProviderHTTPError(ProviderError):
    """The upstream answered with an error status. Retryable for 408, 409, 429 and 5xx."""

    def __init__(
        self,
        provider: str,
        status_code: int,
        message: str,
        retry_after: float | None = None,
        usage: Usage | None = None,
    ) -> None:
        retryable = status_code in (408, 409, 429) or status_code >= 500
        super().__init__(
            provider=provider,
            message=message,
            status_code=status_code,
            retryable=retryable,
            retry_after=retry_after,
            usage=usage,
        )


class ProviderResponseError(ProviderError):
    """The upstream sent something that is not a valid answer (malformed JSON or events,
    a stream that ended without its final event)."""

    def __init__(self, provider: str, message: str, usage: Usage | None = None) -> None:
        super().__init__(provider=provider, message=message, retryable=True, usage=usage)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """How long an upstream asked us to wait: `retry-after-ms` (OpenAI, Anthropic) or
    `Retry-After` in delta-seconds or as an HTTP date. None when absent or unreadable."""
    millis = _finite(headers.get("retry-after-ms"))
    if millis is not None:
        return max(0.0, millis / 1000)
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _finite(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


# --- The interface ------------------------------------------------------------------------


@runtime_checkable
class Provider(Protocol):
    id: str
    name: str

    def is_configured(self) -> bool:
        """Cheap, local check: is this provider set up to be used (key present, enabled)?"""
        ...

    async def is_available(self) -> bool:
        """Can requests be sent now? May probe the upstream (cached)."""
        ...

    def models(self) -> list[ModelInfo]:
        """The models this provider serves (catalogue plus what the upstream reported)."""
        ...

    def default_model(self) -> str: ...

    def knows_model(self, model: str) -> bool: ...

    async def complete(self, request: CompletionRequest) -> Completion:
        """One non-streaming call."""
        ...

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Stream the answer: TextDelta events, then exactly one StreamEnd. Raises a
        ProviderError (never a silent end) when the upstream fails or stops early."""
        ...

    async def aclose(self) -> None:
        """Close pooled connections (tests, shutdown)."""
        ...


# --- One pooled client per event loop -------------------------------------------------------

C = TypeVar("C")


class LoopBoundClient(Generic[C]):
    """Holds a provider's pooled SDK/HTTP client. A client is bound to the event loop it
    first ran on, so another loop (a new test, a second asyncio.run) gets its own; in a
    server process there is one loop and so one client, reused by every request."""

    def __init__(self, build: Callable[[], C], close: Callable[[C], Awaitable[None]]) -> None:
        self._build = build
        self._close = close
        self._client: C | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> C:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = self._build()
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        client, loop = self._client, self._loop
        self._client = self._loop = None
        if client is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is running and loop is not None and not loop.is_closed():
            await self._close(client)
        # A client of another (finished) loop cannot be closed from here; its sockets went
        # with that loop.

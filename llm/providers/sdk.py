"""What the adapters over the official SDKs (llm/providers/openai.py, anthropic.py) share.

`SDKProvider` holds everything but the wire format:

- the catalogue: the adapter's built-in models plus the extra ones named in settings,
  its default model, `knows_model`; a provider is configured when it is in
  RHETOR_PROVIDERS and its API key is set, and available when configured;
- one SDK client per provider instance (the registry keeps one per process), bound to its
  event loop (`LoopBoundClient`) and created lazily with `max_retries=0` (the router owns
  retries and fallbacks), explicit connect/read timeouts, and an `http_client` of the
  SDK's own defaults that shares the process's one SSL context; every call passes its own
  timeout too;
- the calls: a POST through the SDK's documented raw surface, `client.post(...,
  cast_to=httpx2.Response)`, with the body serialized here (no typed-params transform per
  call, no pydantic model per answer or event); the SSE loop of a stream (frames read with
  llm/providers/sse.py; after the final event the body's end is read briefly, so the
  connection goes back to the pool instead of being closed, as the SDKs do);
- the error mapping: a non-2xx status is a ProviderHTTPError with the upstream's message
  and Retry-After, a timeout a ProviderTimeout, a broken connection a
  ProviderConnectionError before the answer began and a cut stream (ProviderResponseError)
  after, anything unreadable a malformed response.

An adapter declares its settings and SDK classes and supplies its wire format: `_body`
(the request), `_completion` (a JSON answer), a `StreamReader` (the stream's events and
usage), `_status_message` and `_stream_error` (what its error bodies say). Its completions
and stream ends report the model Rhetor asked for (its routing and price key), not the
snapshot name the API echoes back.
bench/provider_stream.py measures the cost per call.
"""

import contextlib
import functools
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeAlias, TypeVar

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
from llm.providers.sse import SSEDecoder, SSEEvent

if TYPE_CHECKING:
    import anthropic
    import openai

# What the SDKs' transport raises for network trouble.
TRANSPORT_ERRORS = (httpx2.TransportError, OSError, anyio.EndOfStream, anyio.BrokenResourceError)
# How long to wait, after a stream's final event, for the end of the body (the SDKs wait
# as long).
DRAIN_SECONDS = 0.1

# Loading the CA bundle takes ~20 ms; every client of the process shares one context.
_ssl_context = functools.cache(httpx2.create_ssl_context)

Client = TypeVar("Client", bound="openai.AsyncOpenAI | anthropic.AsyncAnthropic")
StatusError: TypeAlias = "openai.APIStatusError | anthropic.APIStatusError"


def dumps(body: dict[str, Any]) -> bytes:
    """A request body as the SDKs serialize it (compact UTF-8 JSON, no NaN)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def drain(chunks: AsyncGenerator[bytes, None]) -> None:
    """Read what follows a stream's final event (normally only the body's end), briefly,
    so that the connection goes back to the pool instead of being closed."""
    with contextlib.suppress(*TRANSPORT_ERRORS), anyio.move_on_after(DRAIN_SECONDS):
        async for _ in chunks:
            pass


def detail(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return str(cause) or type(cause).__name__


class StreamFailed(Exception):
    """An error sent inside a 200 stream (an error event or object); `body` is what the
    adapter read of it."""

    def __init__(self, body: object) -> None:
        super().__init__(body)
        self.body = body


class StreamReader:
    """An adapter's reading of one stream. `event` reads one event and returns the text to
    pass on (if any), noting usage and stop reasons as they go by; it sets `done` at the
    final event, and raises StreamFailed for an error event and ValueError for a malformed
    one. `usage` is what was reported so far (charged when the stream fails), `end` the
    closing StreamEnd, or the ProviderResponseError of a stream that ended before it was
    complete. (One call per event: cheaper than a generator per read.)"""

    def __init__(self, provider_id: str, request: CompletionRequest) -> None:
        self.provider_id = provider_id
        self.request = request
        self.done = False

    def event(self, sse: SSEEvent) -> str | None:
        raise NotImplementedError

    def usage(self) -> Usage | None:
        raise NotImplementedError

    def end(self) -> StreamEnd:
        raise NotImplementedError


class SDKProvider(Generic[Client]):
    """An adapter over an official SDK; see the module docstring for what a subclass
    declares and supplies."""

    id: str
    name: str
    # The upstream, as "cannot reach ..." names it.
    vendor: ClassVar[str]
    catalogue: ClassVar[tuple[ModelInfo, ...]]
    default_model_id: ClassVar[str]
    # The context window of an extra model named in settings.
    extra_context_window: ClassVar[int] = ModelInfo.context_window
    # Names of the Django settings read.
    api_key_setting: ClassVar[str]
    base_url_setting: ClassVar[str]
    extra_models_setting: ClassVar[str]
    # The SDK: its client, its default HTTP client, and its errors.
    client_class: type[Client]
    http_client_class: ClassVar[type[httpx2.AsyncClient]]
    api_errors: ClassVar[tuple[type[Exception], ...]]
    status_error: ClassVar[type["openai.APIStatusError"] | type["anthropic.APIStatusError"]]
    timeout_error: ClassVar[type["openai.APITimeoutError"] | type["anthropic.APITimeoutError"]]
    connection_error: ClassVar[
        type["openai.APIConnectionError"] | type["anthropic.APIConnectionError"]
    ]
    # The endpoint, and request options the SDK needs besides the timeout.
    path: ClassVar[str]
    request_options: ClassVar[Mapping[str, object]] = {}
    stream_reader: ClassVar[type[StreamReader]]

    def __init__(self) -> None:
        self._clients = LoopBoundClient(self._build_client, lambda c: c.close())
        # What a call catches and maps to a ProviderError.
        self._caught: tuple[type[Exception], ...] = (
            *self.api_errors,
            *TRANSPORT_ERRORS,
            ValueError,
        )

    # --- Configuration and catalogue ------------------------------------------------------

    def is_configured(self) -> bool:
        return self.id in settings.RHETOR_PROVIDERS and bool(
            getattr(settings, self.api_key_setting)
        )

    async def is_available(self) -> bool:
        return self.is_configured()

    def models(self) -> list[ModelInfo]:
        known = list(self.catalogue)
        ids = {m.id for m in known}
        for model_id in getattr(settings, self.extra_models_setting):
            if model_id and model_id not in ids:
                known.append(ModelInfo(model_id, model_id, self.extra_context_window))
                ids.add(model_id)
        return known

    def default_model(self) -> str:
        return self.default_model_id

    def knows_model(self, model: str) -> bool:
        return any(m.id == model for m in self.models())

    # --- Client ---------------------------------------------------------------------------

    def _get_client(self) -> Client:
        """The pooled client of the running event loop, created on first use."""
        if not self.is_configured():
            raise ProviderNotConfigured(self.id)
        return self._clients.get()

    def _build_client(self) -> Client:
        # A client is bound to the loop it first ran on; another loop (a new test, a
        # second asyncio.run) gets its own.
        timeout = httpx2.Timeout(
            settings.RHETOR_PROVIDER_TIMEOUT, connect=settings.RHETOR_CONNECT_TIMEOUT
        )
        return self.client_class(
            api_key=getattr(settings, self.api_key_setting),
            base_url=getattr(settings, self.base_url_setting) or None,
            max_retries=0,
            timeout=timeout,
            http_client=self.http_client_class(timeout=timeout, verify=_ssl_context()),
        )

    async def aclose(self) -> None:
        await self._clients.aclose()

    @staticmethod
    def _timeout(request: CompletionRequest) -> httpx2.Timeout:
        read = request.timeout or settings.RHETOR_PROVIDER_TIMEOUT
        return httpx2.Timeout(read, connect=min(settings.RHETOR_CONNECT_TIMEOUT, read))

    async def _post(self, request: CompletionRequest, *, stream: bool) -> httpx2.Response:
        """POST the request through the SDK client (auth, base URL, headers, timeouts, and
        non-2xx statuses raised as the SDK's APIStatusError), with the body already
        serialized and the raw response back. With `stream`, the body is not read yet."""
        client = self._get_client()
        # Each SDK types these as its own RequestOptions (the adapter adds only its own keys).
        options: Any = {"timeout": self._timeout(request), **self.request_options}
        return await client.post(
            self.path,
            cast_to=httpx2.Response,
            content=dumps(self._body(request, stream=stream)),
            options=options,
            stream=stream,
        )

    # --- Calls ----------------------------------------------------------------------------

    async def complete(self, request: CompletionRequest) -> Completion:
        try:
            response = await self._post(request, stream=False)
            answer = json.loads(response.content)
        except self._caught as exc:
            raise self._error(exc, in_stream=False) from exc
        return self._completion(request, answer)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        try:
            response = await self._post(request, stream=True)
        except self._caught as exc:
            raise self._error(exc, in_stream=False) from exc
        reader = self.stream_reader(self.id, request)
        chunks = response.aiter_bytes()
        decoder = SSEDecoder()
        ended = False
        try:
            while not (reader.done or ended):
                try:
                    events = decoder.feed(await anext(chunks))
                except StopAsyncIteration:
                    events = decoder.finish()
                    ended = True
                for sse in events:
                    text = reader.event(sse)
                    if text:
                        yield TextDelta(text)
                    if reader.done:
                        break
            if reader.done:
                await drain(chunks)
        except StreamFailed as exc:
            error = self._stream_error(exc.body, response.headers)
            error.usage = reader.usage()
            raise error from exc
        except self._caught as exc:
            raise self._error(exc, in_stream=True, usage=reader.usage()) from exc
        finally:
            await chunks.aclose()
            await response.aclose()
        yield reader.end()

    # --- Wire format (the adapter's) ------------------------------------------------------

    def _body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    def _completion(self, request: CompletionRequest, answer: Any) -> Completion:
        """The Completion of a JSON answer; ProviderResponseError when it is not one."""
        raise NotImplementedError

    def _status_message(self, exc: StatusError) -> str:
        """The upstream's own message for an error status."""
        raise NotImplementedError

    def _stream_error(self, body: object, headers: httpx2.Headers) -> ProviderError:
        """The error for an error sent inside a 200 stream."""
        raise NotImplementedError

    # --- Errors ---------------------------------------------------------------------------

    def _error(
        self, exc: Exception, *, in_stream: bool, usage: Usage | None = None
    ) -> ProviderError:
        """The typed error for what the SDK raised. `in_stream`: the response had begun,
        so a broken connection is a cut stream rather than an unreachable upstream."""
        error: ProviderError
        if isinstance(exc, self.status_error):
            return ProviderHTTPError(
                self.id,
                exc.status_code,
                self._status_message(exc),
                retry_after=retry_after_seconds(exc.response.headers),
                usage=usage,
            )
        if isinstance(exc, (self.timeout_error, httpx2.TimeoutException)):
            error = ProviderTimeout(self.id)
        elif isinstance(exc, (self.connection_error, *TRANSPORT_ERRORS)):
            if in_stream:
                error = ProviderResponseError(self.id, f"the stream was cut: {detail(exc)}")
            else:
                error = ProviderConnectionError(
                    self.id, f"cannot reach {self.vendor}: {detail(exc)}"
                )
        else:
            error = ProviderResponseError(self.id, f"malformed response: {detail(exc)}")
        error.usage = usage
        return error

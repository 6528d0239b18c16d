"""Ollama over its HTTP API, with one pooled `httpx.AsyncClient` per provider instance.

`POST /api/chat` answers JSON, or with `"stream": true` NDJSON lines whose last one has
`done: true` with the usage (`prompt_eval_count`, `eval_count`) and `done_reason`. A stream
that ends without that line raises ProviderResponseError, never a silent end.

Availability is a cached probe of `GET /api/tags` (short timeout; a success is trusted
for 30 s, a failure for 5 s), which also tells which models are installed: `models()` lists
them when known, else the built-in catalogue.
"""

import asyncio
import functools
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
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
from rhetor_site.tokens import estimate_messages_tokens, estimate_tokens

logger = logging.getLogger(__name__)

PROVIDER_ID = "ollama"
CATALOGUE = (
    ModelInfo("llama3", "Llama 3", 8192),
    ModelInfo("mistral", "Mistral", 32_768),
    ModelInfo("codellama", "Code Llama", 16_384),
)
DEFAULT_MODEL = "llama3"

# Loading the CA bundle takes ~20 ms; every client of the process shares one context.
_ssl_context = functools.cache(httpx.create_ssl_context)


def ollama_messages(request: CompletionRequest) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": request.system}] if request.system else []
    messages.extend({"role": m.role, "content": m.content} for m in request.messages)
    return messages


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _tag_names(payload: Any) -> tuple[str, ...]:
    """The model names of a `GET /api/tags` answer; ValueError when it is not one."""
    models = payload.get("models") if isinstance(payload, dict) else None
    if not isinstance(models, list):
        raise ValueError("not an Ollama tags answer")
    names = []
    for model in models:
        name = (model.get("name") or model.get("model")) if isinstance(model, dict) else None
        if isinstance(name, str) and name:
            names.append(name)
    return tuple(names)


class OllamaProvider:
    id = PROVIDER_ID
    name = "Ollama Local LLMs"

    # Tunable per instance (tests shorten them).
    probe_timeout = 1.5
    probe_ttl_up = 30.0
    probe_ttl_down = 5.0

    def __init__(self) -> None:
        self._clients = LoopBoundClient(self._build_client, lambda c: c.aclose())
        self._available = False
        self._checked_until = 0.0  # time.monotonic() until which _available holds
        self._installed: tuple[str, ...] | None = None  # from the last successful probe
        self._probe_task: asyncio.Task[bool] | None = None

    # --- Configuration, availability and catalogue ----------------------------------------

    def is_configured(self) -> bool:
        return self.id in settings.RHETOR_PROVIDERS

    async def is_available(self) -> bool:
        if not self.is_configured():
            return False
        if time.monotonic() < self._checked_until:
            return self._available
        # Callers arriving while a probe runs share it.
        loop = asyncio.get_running_loop()
        task = self._probe_task
        if task is None or task.done() or task.get_loop() is not loop:
            task = self._probe_task = loop.create_task(self._probe())
        return await asyncio.shield(task)

    async def _probe(self) -> bool:
        client = self._get_client()
        try:
            response = await client.get("/api/tags", timeout=self.probe_timeout)
            response.raise_for_status()
            names = _tag_names(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            if self._available or not self._checked_until:
                logger.info("Ollama at %s is not available: %s", settings.OLLAMA_BASE_URL, exc)
            self._available = False
            self._checked_until = time.monotonic() + self.probe_ttl_down
            return False
        self._installed = names
        self._available = True
        self._checked_until = time.monotonic() + self.probe_ttl_up
        return True

    def _info(self, name: str) -> ModelInfo:
        base, _, tag = name.partition(":")
        for model in CATALOGUE:
            if model.id == base:
                label = model.name if tag in ("", "latest") else f"{model.name} ({tag})"
                return ModelInfo(name, label, model.context_window)
        return ModelInfo(name, name)

    def models(self) -> list[ModelInfo]:
        if self._installed is not None:
            return [self._info(name) for name in self._installed]
        return list(CATALOGUE)

    def default_model(self) -> str:
        if self._installed:
            for model in CATALOGUE:
                for name in (model.id, f"{model.id}:latest"):
                    if name in self._installed:
                        return name
            return self._installed[0]
        return DEFAULT_MODEL

    def knows_model(self, model: str) -> bool:
        names = {m.id for m in CATALOGUE} | set(self._installed or ())
        return (
            model in names or f"{model}:latest" in names or model.removesuffix(":latest") in names
        )

    # --- Client ---------------------------------------------------------------------------

    def _get_client(self) -> httpx.AsyncClient:
        """The pooled client of the running event loop, created on first use."""
        if not self.is_configured():
            raise ProviderNotConfigured(self.id)
        return self._clients.get()

    def _build_client(self) -> httpx.AsyncClient:
        # A client is bound to the loop it first ran on; another loop (a new test, a
        # second asyncio.run) gets its own.
        return httpx.AsyncClient(
            base_url=settings.OLLAMA_BASE_URL,
            timeout=httpx.Timeout(
                settings.RHETOR_PROVIDER_TIMEOUT, connect=settings.RHETOR_CONNECT_TIMEOUT
            ),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
            verify=_ssl_context(),
        )

    async def aclose(self) -> None:
        await self._clients.aclose()

    @staticmethod
    def _timeout(request: CompletionRequest) -> httpx.Timeout:
        read = request.timeout or settings.RHETOR_PROVIDER_TIMEOUT
        return httpx.Timeout(read, connect=min(settings.RHETOR_CONNECT_TIMEOUT, read))

    @staticmethod
    def _body(request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        return {
            "model": request.model,
            "messages": ollama_messages(request),
            "stream": stream,
            "options": options,
        }

    def _usage(self, request: CompletionRequest, final: dict[str, Any], text: str) -> Usage:
        """Usage from the final object; a missing count (Ollama omits prompt_eval_count
        when the prompt was cached) is estimated, and the usage marked so."""
        prompt = _int(final.get("prompt_eval_count"))
        completion = _int(final.get("eval_count"))
        return Usage(
            input_tokens=(
                prompt
                if prompt is not None
                else estimate_messages_tokens(request.messages, request.system)
            ),
            output_tokens=completion if completion is not None else estimate_tokens(text),
            source="provider" if prompt is not None and completion is not None else "estimate",
        )

    # --- Calls ----------------------------------------------------------------------------

    async def complete(self, request: CompletionRequest) -> Completion:
        client = self._get_client()
        try:
            response = await client.post(
                "/api/chat", json=self._body(request, stream=False), timeout=self._timeout(request)
            )
        except httpx.HTTPError as exc:
            raise self._error(exc, in_stream=False) from exc
        if response.status_code >= 400:
            raise self._http_error(response)
        try:
            data = response.json()
        except ValueError as exc:
            raise ProviderResponseError(self.id, f"malformed response: {exc}") from exc
        if not isinstance(data, dict):
            raise ProviderResponseError(self.id, "malformed response: not a JSON object")
        if data.get("error"):
            raise ProviderResponseError(self.id, f"Ollama failed: {data['error']}")
        message = data.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if not isinstance(text, str):
            raise ProviderResponseError(self.id, "the response has no message content")
        return Completion(
            text=text,
            usage=self._usage(request, data, text),
            model=request.model,
            finish_reason=data.get("done_reason"),
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        client = self._get_client()
        outgoing = client.build_request(
            "POST",
            "/api/chat",
            json=self._body(request, stream=True),
            timeout=self._timeout(request),
        )
        try:
            response = await client.send(outgoing, stream=True)
        except httpx.HTTPError as exc:
            raise self._error(exc, in_stream=False) from exc
        final: dict[str, Any] | None = None
        pieces: list[str] = []
        try:
            if response.status_code >= 400:
                await response.aread()
                raise self._http_error(response)
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except ValueError as exc:
                    raise ProviderResponseError(self.id, f"malformed stream line: {exc}") from exc
                if not isinstance(data, dict):
                    raise ProviderResponseError(self.id, "malformed stream line: not an object")
                if data.get("error"):
                    raise ProviderResponseError(self.id, f"the stream failed: {data['error']}")
                message = data.get("message")
                text = message.get("content") if isinstance(message, dict) else None
                if isinstance(text, str) and text:
                    pieces.append(text)
                    yield TextDelta(text)
                if data.get("done") is True:
                    final = data
        except httpx.HTTPError as exc:
            raise self._error(exc, in_stream=True) from exc
        finally:
            await response.aclose()
        if final is None:
            raise ProviderResponseError(self.id, "the stream ended without its final done line")
        yield StreamEnd(
            usage=self._usage(request, final, "".join(pieces)),
            model=request.model,
            finish_reason=final.get("done_reason"),
        )

    # --- Errors ---------------------------------------------------------------------------

    def _http_error(self, response: httpx.Response) -> ProviderHTTPError:
        """An error status with Ollama's own message ({"error": "..."})."""
        message = response.text.strip()[:500] or response.reason_phrase
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            message = body["error"]
        return ProviderHTTPError(
            self.id,
            response.status_code,
            message,
            retry_after=retry_after_seconds(response.headers),
        )

    def _error(self, exc: httpx.HTTPError, *, in_stream: bool) -> ProviderError:
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.TimeoutException):
            return ProviderTimeout(self.id)
        if in_stream:
            return ProviderResponseError(self.id, f"the stream was cut: {detail}")
        return ProviderConnectionError(
            self.id, f"cannot reach Ollama at {settings.OLLAMA_BASE_URL}: {detail}"
        )

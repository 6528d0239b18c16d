"""Async Python clients for Rhetor, for other Tekton components.

    from rhetor.client import get_rhetor_prompt_client

    client = await get_rhetor_prompt_client()
    try:
        template = await client.create_prompt_template(
            name="Documentation Template",
            template="Write documentation for {component} that explains {feature}.",
            variables=["component", "feature"],
        )
        text = await client.render_prompt(
            template_id=template["template_id"],
            variables={"component": "Rhetor", "feature": "model routing"},
        )
    finally:
        await client.close()

Both clients are async context managers (`async with RhetorCommunicationClient() as c:`)
and close their HTTP connections on exit or `close()`.

Where Rhetor is: the `url` argument, else `RHETOR_URL`, else what Hermes lists for
"rhetor" when `HERMES_API_URL` is set (`GET {HERMES_API_URL}/api/components`), else
http://localhost:8300. The API key (`api_key=` or `RHETOR_API_KEY`) is sent as
`Authorization: Bearer <key>`.

Every error answer of the server raises a `RhetorClientError` subclass chosen by its HTTP
status, carrying the server's `error` text and machine `code`: `InvalidRequest` (400,
422), `Unauthorized` (401), `BudgetExceeded` (402), `Forbidden` (403), `NotFound` (404),
`Conflict` (409), `RateLimited` (429), `Unavailable` (5xx, or Rhetor unreachable). A
stream that fails after it began raises `StreamInterrupted`.

Only httpx and the standard library are used: this module never imports Django.
"""

import contextlib
import json
import os
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://localhost:8300"
DEFAULT_TIMEOUT = 60.0
DISCOVERY_TIMEOUT = 3.0
COMPONENT_NAME = "rhetor"

__all__ = [
    "BudgetExceeded",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "RateLimited",
    "ReplyStream",
    "RhetorClientError",
    "RhetorCommunicationClient",
    "RhetorPromptClient",
    "StreamInterrupted",
    "Unauthorized",
    "Unavailable",
    "discover_rhetor_url",
    "get_rhetor_communication_client",
    "get_rhetor_prompt_client",
    "resolve_rhetor_url",
]


# --- Errors ------------------------------------------------------------------------------


class RhetorClientError(Exception):
    """An error answer from Rhetor (or Rhetor not answering). `error` is the server's
    human-readable text, `code` its machine code, `status` the HTTP status (None when
    there was no answer), `body` the whole error body."""

    def __init__(
        self,
        error: str,
        *,
        code: str = "error",
        status: int | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{error} ({code})" if code else error)
        self.error = error
        self.code = code
        self.status = status
        self.body: dict[str, Any] = dict(body or {})


class InvalidRequest(RhetorClientError):
    """400 or 422: the request was refused as it was written."""


class Unauthorized(RhetorClientError):
    """401: no valid API key."""


class BudgetExceeded(RhetorClientError):
    """402: an enforced budget limit does not allow the request."""


class Forbidden(RhetorClientError):
    """403: the API key lacks the scope or component for this."""


class NotFound(RhetorClientError):
    """404: no such template, prompt, personality or conversation."""


class Conflict(RhetorClientError):
    """409: it exists already, or is in use."""


class RateLimited(RhetorClientError):
    """429: too many requests; `retry_after` is the server's hint in seconds, if any."""

    @property
    def retry_after(self) -> float | None:
        value = self.body.get("retry_after")
        return float(value) if isinstance(value, int | float) else None


class Unavailable(RhetorClientError):
    """5xx, or Rhetor could not be reached at all (`status` is None then)."""


class StreamInterrupted(RhetorClientError):
    """A streamed reply failed after it began (the server's `error` event)."""


_BY_STATUS: dict[int, type[RhetorClientError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    402: BudgetExceeded,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: InvalidRequest,
    429: RateLimited,
}


def error_for_response(
    status: int, content: bytes, headers: Mapping[str, str]
) -> RhetorClientError:
    """The typed exception for an error answer."""
    body: dict[str, Any] = {}
    try:
        parsed = json.loads(content) if content else {}
        if isinstance(parsed, dict):
            body = parsed
    except ValueError:
        pass
    detail = body.get("error")
    if isinstance(detail, dict):  # OpenAI's shape {"error": {"message", "code"}}
        body = {**body, **detail}
        detail = detail.get("message")
    text = str(detail or content.decode(errors="replace").strip() or f"HTTP {status}")
    code = str(body.get("code") or f"http_{status}")
    if status == 429 and "retry_after" not in body and headers.get("retry-after"):
        with contextlib.suppress(ValueError):
            body["retry_after"] = float(headers["retry-after"])
    kind = _BY_STATUS.get(status) or (Unavailable if status >= 500 else RhetorClientError)
    return kind(text, code=code, status=status, body=body)


# --- Finding Rhetor ------------------------------------------------------------------------


def _component_entries(listing: Any) -> list[dict[str, Any]]:
    """Hermes answers a list of components, `{"components": [...]}`, or an object keyed by
    component id; each entry is what the component registered."""
    if isinstance(listing, dict) and "components" in listing:
        listing = listing["components"]
    if isinstance(listing, dict):
        return [
            {"component_id": key, **value}
            for key, value in listing.items()
            if isinstance(value, dict)
        ]
    if isinstance(listing, list):
        return [entry for entry in listing if isinstance(entry, dict)]
    return []


def _rhetor_endpoint(entry: dict[str, Any]) -> str | None:
    names = {str(entry.get(key) or "").lower() for key in ("name", "type", "component_id", "id")}
    if not any(n == COMPONENT_NAME or n.startswith(f"{COMPONENT_NAME}-") for n in names):
        return None
    raw_metadata = entry.get("metadata")
    metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
    raw_endpoints = metadata.get("endpoints")
    endpoints: dict[str, Any] = raw_endpoints if isinstance(raw_endpoints, dict) else {}
    for candidate in (entry.get("endpoint"), endpoints.get("http"), entry.get("url")):
        if isinstance(candidate, str) and candidate.startswith(("http://", "https://")):
            return candidate.rstrip("/")
    return None


async def discover_rhetor_url(
    hermes_url: str | None = None,
    *,
    http_timeout: float = DISCOVERY_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
) -> str | None:
    """Rhetor's URL as registered with Hermes, or None (no Hermes URL, Hermes down, or
    Rhetor not registered). Never raises: discovery falls back, it does not fail."""
    base = (hermes_url or os.environ.get("HERMES_API_URL") or "").strip().rstrip("/")
    if not base:
        return None
    base = base.removesuffix("/api")
    try:
        async with httpx.AsyncClient(timeout=http_timeout, transport=transport) as http:
            response = await http.get(f"{base}/api/components")
            if response.status_code != 200:
                return None
            entries = _component_entries(response.json())
    except (httpx.HTTPError, ValueError):
        return None
    for entry in entries:
        endpoint = _rhetor_endpoint(entry)
        if endpoint:
            return endpoint
    return None


async def resolve_rhetor_url(url: str | None = None, *, hermes_url: str | None = None) -> str:
    """`url`, else RHETOR_URL, else Hermes' entry for Rhetor, else http://localhost:8300."""
    chosen = url or os.environ.get("RHETOR_URL") or await discover_rhetor_url(hermes_url)
    return (chosen or DEFAULT_URL).rstrip("/")


# --- The HTTP base ---------------------------------------------------------------------------


def _path(*parts: str) -> str:
    """A path with each id percent-encoded (context ids contain colons and slashes)."""
    return "/" + "/".join(quote(str(p), safe="") for p in parts)


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class _RhetorHTTP:
    """The HTTP plumbing shared by both clients."""

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = (url or os.environ.get("RHETOR_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("RHETOR_API_KEY")
        # Sent with every request (a shared `http_client` is used as is, never changed).
        self.headers = {"Accept": "application/json"}
        if self.api_key:
            self.headers["Authorization"] = f"Bearer {self.api_key}"
        self._owns_http = http_client is None
        self.http = http_client or httpx.AsyncClient(timeout=timeout, transport=transport)

    def url(self, path: str) -> str:
        return self.base_url + path

    async def close(self) -> None:
        """Close the HTTP connections (only those this client opened itself)."""
        if self._owns_http:
            await self.http.aclose()

    @property
    def closed(self) -> bool:
        return self.http.is_closed

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            response = await self.http.request(
                method,
                self.url(path),
                json=json_body,
                params=_drop_none(params or {}) or None,
                headers=self.headers,
            )
        except httpx.TimeoutException as exc:
            raise Unavailable(
                f"Rhetor at {self.base_url} timed out: {exc}", code="timeout"
            ) from exc
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"cannot reach Rhetor at {self.base_url}: {exc}", code="connection_error"
            ) from exc
        if response.status_code >= 400:
            raise error_for_response(response.status_code, response.content, response.headers)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise RhetorClientError(
                f"Rhetor answered {path} with something that is not JSON",
                code="invalid_response",
                status=response.status_code,
            ) from exc


# --- Prompts ----------------------------------------------------------------------------------

_TEMPLATE_SYNTAX = re.compile(r"\{\{|\{%")


def server_template(template: str, variables: list[str] | None) -> str:
    """The original client wrote placeholders as `{name}`; Rhetor renders `{{ name }}`.
    Each declared variable's `{name}` becomes `{{ name }}`; a template already written in
    Rhetor's syntax, or one without declared variables, is sent unchanged."""
    if not variables or _TEMPLATE_SYNTAX.search(template):
        return template
    for name in variables:
        template = re.sub(
            r"(?<!\{)\{" + re.escape(name) + r"\}(?!\})", "{{ " + name + " }}", template
        )
    return template


class _VersionedTextClient(_RhetorHTTP):
    """The calls templates and system prompts share: Rhetor's /templates and /prompts
    work alike. `kind` is the path and the listing's key ("templates" or "prompts");
    fields and parameters that are None are not sent."""

    async def _text_list(self, kind: str, **filters: str | None) -> list[dict[str, Any]]:
        result = await self._request("GET", f"/{kind}", params=filters)
        return list(result[kind])

    async def _text_get(self, kind: str, text_id: str, **version: int | None) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", _path(kind, text_id), params=version)
        return result

    async def _text_create(self, kind: str, **fields: Any) -> dict[str, Any]:
        body = _drop_none(fields)
        result: dict[str, Any] = await self._request("POST", f"/{kind}", json_body=body)
        return result

    async def _text_version_add(self, kind: str, text_id: str, **fields: Any) -> dict[str, Any]:
        body = _drop_none(fields)
        result: dict[str, Any] = await self._request("PUT", _path(kind, text_id), json_body=body)
        return result


class RhetorPromptClient(_VersionedTextClient):
    """Templates, system prompts, personalities and prompt generation."""

    # Templates

    async def create_prompt_template(
        self,
        name: str,
        template: str,
        variables: list[str] | None = None,
        description: str | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        category: str = "general",
    ) -> dict[str, Any]:
        """Create a template; returns it with its `template_id` and versions."""
        return await self._text_create(
            "templates",
            name=name,
            content=server_template(template, variables),
            category=category,
            description=description,
            tags=tags,
            metadata=metadata,
            variables=variables,
        )

    async def render_prompt(
        self,
        template_id: str,
        variables: dict[str, Any] | None = None,
        version_id: int | None = None,
    ) -> str:
        """The template rendered with `variables` (a missing one raises InvalidRequest
        with code `template_variables_missing`)."""
        result = await self._request(
            "POST",
            "/templates/render",
            json_body=_drop_none(
                {"template_id": template_id, "variables": variables or {}, "version_id": version_id}
            ),
        )
        return str(result["rendered_content"])

    async def list_templates(
        self, category: str | None = None, tag: str | None = None
    ) -> list[dict[str, Any]]:
        return await self._text_list("templates", category=category, tag=tag)

    async def get_template(self, template_id: str, version_id: int | None = None) -> dict[str, Any]:
        return await self._text_get("templates", template_id, version_id=version_id)

    async def update_template(
        self,
        template_id: str,
        template: str,
        variables: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        description: str | None = None,
        tags: list[str] | None = None,
    ) -> dict[str, Any]:
        """Add a version with new content (templates are versioned, never overwritten)."""
        return await self._text_version_add(
            "templates",
            template_id,
            content=server_template(template, variables),
            variables=variables,
            metadata=metadata,
            description=description,
            tags=tags,
        )

    # System prompts

    async def list_prompts(
        self, component: str | None = None, tag: str | None = None
    ) -> list[dict[str, Any]]:
        return await self._text_list("prompts", component=component, tag=tag)

    async def get_prompt(self, prompt_id: str, version: int | None = None) -> dict[str, Any]:
        return await self._text_get("prompts", prompt_id, version=version)

    async def create_prompt(
        self,
        name: str,
        component: str,
        content: str,
        description: str | None = None,
        tags: list[str] | None = None,
        is_default: bool = False,
        task_type: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return await self._text_create(
            "prompts",
            name=name,
            component=component,
            content=content,
            description=description,
            tags=tags,
            is_default=is_default,
            task_type=task_type,
            metadata=metadata,
        )

    async def update_prompt(
        self,
        prompt_id: str,
        content: str,
        metadata: dict[str, Any] | None = None,
        description: str | None = None,
        activate: bool = True,
    ) -> dict[str, Any]:
        """Add a version (active unless `activate=False`)."""
        return await self._text_version_add(
            "prompts",
            prompt_id,
            content=content,
            metadata=metadata,
            description=description,
            activate=activate,
        )

    # Personalities and generation

    async def create_personality(
        self,
        name: str,
        traits: dict[str, Any] | list[str] | None = None,
        description: str | None = None,
        tone: str | None = None,
        examples: list[str | dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        """Create a personality; returns it with its `personality_id`."""
        body = _drop_none(
            {
                "name": name,
                "traits": traits,
                "description": description,
                "tone": tone,
                "examples": examples,
            }
        )
        result: dict[str, Any] = await self._request("POST", "/personalities", json_body=body)
        return result

    async def list_personalities(self) -> list[dict[str, Any]]:
        result = await self._request("GET", "/personalities")
        return list(result["personalities"])

    async def get_personality(self, personality_id: int | str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(
            "GET", _path("personalities", str(personality_id))
        )
        return result

    async def generate_prompt(
        self,
        task: str,
        context: dict[str, Any] | None = None,
        personality_id: int | str | None = None,
        format: str | None = None,
        component: str | None = None,
        task_type: str | None = None,
        prompt_id: str | None = None,
        variables: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A system prompt composed for `task`: the component's prompt, the personality,
        the context and the task. The result's `prompt` is the text; with
        `format="chat"`, `messages` holds the system prompt and the task as the user's
        turn."""
        body = _drop_none(
            {
                "task": task,
                "context": context,
                "personality_id": personality_id,
                "format": format,
                "component": component,
                "task_type": task_type,
                "prompt_id": prompt_id,
                "variables": variables,
            }
        )
        result: dict[str, Any] = await self._request("POST", "/prompts/generate", json_body=body)
        return result


# --- Conversations and messaging ------------------------------------------------------------

_ROLE_OF_SENDER = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "llm": "assistant",
    "rhetor": "assistant",
    "system": "system",
}


@dataclass
class ReplyStream:
    """A streamed reply from `POST /stream`. Iterate it for the text chunks; when it ends,
    `done` is true and `model`, `provider`, `usage`, `fallback` and `budget_warnings` are
    those of the terminal event. A failure after the stream began raises
    `StreamInterrupted`. Use it as `async with` (or iterate it to the end) so the
    connection is released."""

    _client: "RhetorCommunicationClient"
    _body: dict[str, Any]
    model: str | None = None
    provider: str | None = None
    context: str | None = None
    usage: dict[str, Any] | None = None
    fallback: bool | None = None
    budget_warnings: list[str] = field(default_factory=list)
    done: bool = False
    text: str = ""
    _response: httpx.Response | None = None
    _iterator: AsyncIterator[str] | None = None

    async def __aenter__(self) -> Self:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[str]:
        if self._iterator is None:
            self._iterator = self._chunks()
        return self._iterator

    async def aclose(self) -> None:
        if self._response is not None:
            await self._response.aclose()
            self._response = None

    async def _open(self) -> httpx.Response:
        if self._response is not None:
            return self._response
        client = self._client
        request = client.http.build_request(
            "POST",
            client.url("/stream"),
            json=self._body,
            headers={**client.headers, "Accept": "text/event-stream"},
        )
        try:
            response = await client.http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"cannot reach Rhetor at {client.base_url}: {exc}", code="connection_error"
            ) from exc
        if response.status_code >= 400:
            content = await response.aread()
            await response.aclose()
            raise error_for_response(response.status_code, content, response.headers)
        self._response = response
        return response

    async def _chunks(self) -> AsyncIterator[str]:
        response = await self._open()
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if not data or data == "[DONE]":
                    continue
                event = json.loads(data)
                self.model = event.get("model", self.model)
                self.provider = event.get("provider", self.provider)
                self.context = event.get("context", self.context)
                if event.get("error"):
                    self.done = True
                    raise StreamInterrupted(
                        str(event["error"]),
                        code=str(event.get("code") or "stream_interrupted"),
                        status=response.status_code,
                        body=event,
                    )
                chunk = event.get("chunk") or ""
                if chunk:
                    self.text += chunk
                    yield chunk
                if event.get("done"):
                    self.done = True
                    self.usage = event.get("usage")
                    self.fallback = event.get("fallback")
                    self.budget_warnings = list(event.get("budget_warnings") or [])
                    return
            raise StreamInterrupted(
                "the stream ended without its final event", code="stream_incomplete"
            )
        except httpx.HTTPError as exc:
            raise StreamInterrupted(
                f"the stream broke off: {exc}", code="stream_interrupted"
            ) from exc
        finally:
            await self.aclose()


class RhetorCommunicationClient(_RhetorHTTP):
    """Conversations (Rhetor's contexts) and messages to the models."""

    async def create_conversation(
        self,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        component: str | None = None,
        conversation_id: str | None = None,
    ) -> dict[str, Any]:
        """An empty conversation. Its id (`conversation_id`, also `id`) is
        `<component>:<name>-<random>` unless given."""
        body = _drop_none(
            {
                "context_id": conversation_id,
                "name": name,
                "component": component,
                "metadata": metadata,
            }
        )
        result: dict[str, Any] = await self._request("POST", "/contexts", json_body=body)
        return {"conversation_id": result["id"], **result}

    async def add_message(
        self,
        conversation_id: str,
        message: str,
        sender: str = "user",
        metadata: dict[str, Any] | None = None,
        role: str | None = None,
    ) -> dict[str, Any]:
        """Append a message as is (no model answers it). `sender` "user", "assistant" or
        "system" is the role; any other sender (a component's name) speaks as the user,
        and is kept in the message's metadata."""
        chosen = role or _ROLE_OF_SENDER.get(sender.lower(), "user")
        meta = {**(metadata or {}), "sender": sender}
        result = await self._request(
            "POST",
            _path("contexts", conversation_id, "messages"),
            json_body={"role": chosen, "content": message, "metadata": meta},
        )
        stored: dict[str, Any] = result["message"]
        return {"conversation_id": result["context_id"], "message_id": stored["id"], **stored}

    async def get_conversation(
        self, conversation_id: str, limit: int = 100, include_metadata: bool = True
    ) -> dict[str, Any]:
        """The conversation's latest `limit` active messages, oldest first."""
        result: dict[str, Any] = await self._request(
            "GET",
            _path("contexts", conversation_id),
            params={"limit": limit, "include_metadata": str(include_metadata).lower()},
        )
        return {"conversation_id": result["context_id"], **result}

    async def list_conversations(
        self, component: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[dict[str, Any]]:
        result = await self._request(
            "GET", "/contexts", params={"component": component, "limit": limit, "offset": offset}
        )
        return list(result["contexts"])

    async def delete_conversation(self, conversation_id: str) -> bool:
        result = await self._request("DELETE", _path("contexts", conversation_id))
        return bool(result["success"])

    async def analyze_conversation(
        self,
        conversation_id: str,
        analysis_type: str | None = None,
        query: str | None = None,
        max_tokens: int = 150,
    ) -> dict[str, Any]:
        """Counts over the conversation (`analysis_type` "stats", the default): messages
        and tokens per role, time span, the models that answered. "summary" adds a
        summary written by Rhetor's summarisation route; "search" adds the messages
        matching `query`. Returns `{"conversation_id", "analysis_type", "analysis"}`."""
        kind = analysis_type or "stats"
        if kind not in ("stats", "summary", "search"):
            raise InvalidRequest(
                f"analysis_type must be stats, summary or search (got {kind!r})",
                code="validation_error",
            )
        if kind == "search" and not query:
            raise InvalidRequest("a search analysis needs a query", code="validation_error")
        analysis: dict[str, Any] = await self._request(
            "POST", _path("contexts", conversation_id, "analyze")
        )
        if kind == "summary":
            summary = await self._request(
                "POST",
                _path("contexts", conversation_id, "summarize"),
                params={"max_tokens": max_tokens},
            )
            analysis["summary"] = summary["summary"]
        elif kind == "search":
            found = await self._request(
                "POST",
                _path("contexts", conversation_id, "search"),
                json_body={"query": query},
            )
            analysis["search"] = {"query": query, "results": found["results"]}
        return {"conversation_id": conversation_id, "analysis_type": kind, "analysis": analysis}

    def _message_body(
        self,
        message: str,
        conversation_id: str,
        task_type: str,
        component: str | None,
        options: dict[str, Any] | None,
        prompt_id: str | None,
    ) -> dict[str, Any]:
        return _drop_none(
            {
                "message": message,
                "context_id": conversation_id,
                "task_type": task_type,
                "component": component,
                "options": options,
                "prompt_id": prompt_id,
            }
        )

    async def send_message(
        self,
        message: str,
        conversation_id: str = "default",
        task_type: str = "default",
        component: str | None = None,
        options: dict[str, Any] | None = None,
        prompt_id: str | None = None,
    ) -> dict[str, Any]:
        """Ask the model; the exchange is appended to the conversation. Returns the
        standardized reply (`message`, `model`, `provider`, `context`, `usage`,
        `fallback`, `budget_warnings`, ...)."""
        body = self._message_body(
            message, conversation_id, task_type, component, options, prompt_id
        )
        result: dict[str, Any] = await self._request(
            "POST", "/message", json_body={**body, "streaming": False}
        )
        return result

    def stream_message(
        self,
        message: str,
        conversation_id: str = "default",
        task_type: str = "default",
        component: str | None = None,
        options: dict[str, Any] | None = None,
        prompt_id: str | None = None,
    ) -> ReplyStream:
        """The reply as it is generated:

            async with client.stream_message("Hi", "ergon:chat") as reply:
                async for chunk in reply:
                    ...
            reply.usage, reply.model

        (`async for chunk in client.stream_message(...)` works too.)"""
        body = self._message_body(
            message, conversation_id, task_type, component, options, prompt_id
        )
        return ReplyStream(self, body)


# --- Factories ---------------------------------------------------------------------------------


async def get_rhetor_prompt_client(
    url: str | None = None,
    *,
    api_key: str | None = None,
    hermes_url: str | None = None,
    http_timeout: float = DEFAULT_TIMEOUT,
) -> RhetorPromptClient:
    """A prompt client for the Rhetor found by `resolve_rhetor_url`."""
    base = await resolve_rhetor_url(url, hermes_url=hermes_url)
    return RhetorPromptClient(base, api_key=api_key, timeout=http_timeout)


async def get_rhetor_communication_client(
    url: str | None = None,
    *,
    api_key: str | None = None,
    hermes_url: str | None = None,
    http_timeout: float = DEFAULT_TIMEOUT,
) -> RhetorCommunicationClient:
    """A communication client for the Rhetor found by `resolve_rhetor_url`."""
    base = await resolve_rhetor_url(url, hermes_url=hermes_url)
    return RhetorCommunicationClient(base, api_key=api_key, timeout=http_timeout)

"""The canonical request, the caller who makes it, and the answer: what every door
translates its wire format into and out of."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.http import HttpRequest

from access.auth import ANONYMOUS, Principal, request_principal
from contexts.services import component_of
from llm.providers.base import ChatMessage, Usage


@dataclass(frozen=True)
class RouteOptions:
    """What a request may choose over its route. `model` is a model id (`gpt-4o`) or
    `provider/model`; both are resolved alike on every door (llm.gateway.plan)."""

    provider: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    fallback_provider: str | None = None
    fallback_model: str | None = None


@dataclass(frozen=True)
class LLMRequest:
    """A request to the gateway, whatever door it came in by."""

    messages: tuple[ChatMessage, ...]
    context_id: str = "default"
    component: str | None = None
    task_type: str = "default"
    options: RouteOptions = field(default_factory=RouteOptions)
    prompt_id: str | None = None
    prompt_variables: dict[str, Any] | None = None
    # /chat and /v1: `messages` is the conversation to send (instead of the stored history).
    whole_conversation: bool = False
    # False for calls that leave no trace in a context (a prompt comparison, a summary,
    # a stateless /v1 call): nothing is read from or appended to the context.
    store: bool = True

    @property
    def resolved_component(self) -> str:
        """An explicit component wins; else the part of context_id before the colon."""
        return self.component or component_of(self.context_id)


@dataclass(frozen=True)
class Caller:
    """Who makes a request, as the door authenticated them.

    `size_bytes` is the request as received: its estimated tokens are charged to the
    key's token rate limit until the provider's count replaces them. An `internal` call
    is Rhetor's own (a conversation summary): no scope, pin or rate limit applies.
    """

    principal: Principal = ANONYMOUS
    size_bytes: int = 0
    internal: bool = False


INTERNAL = Caller(internal=True)


def http_caller(http: HttpRequest) -> Caller:
    """The caller an HTTP door authenticated, with the size of what it sent."""
    return Caller(principal=request_principal(http), size_bytes=len(http.body))


@dataclass(frozen=True)
class LLMResult:
    text: str
    provider: str
    model: str
    context_id: str
    usage: Usage
    fallback: bool
    finish_reason: str | None
    timestamp: datetime
    budget_warnings: tuple[str, ...] = ()
    cost_nanos: int | None = None  # None: the charge is still pending (database outage)
    # The exchange is kept and will be stored when the database returns (contexts.outbox).
    exchange_pending: bool = False

"""Request and response schemas of the messaging API (TEKTON_CONTRACT.md, "Messaging").

Every input field is accepted in snake_case and camelCase (Tekton's shared models use
camelCase aliases). Unknown keys in `options` are refused so a typo is not silently
ignored; unknown top-level keys are accepted and ignored, because Tekton clients send
extra keys (e.g. `streaming` to /stream).
"""

from typing import Any, Literal

from django.conf import settings
from ninja import Schema
from pydantic import AliasChoices, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from llm.gateway import LLMRequest, RouteOptions
from llm.providers.base import ChatMessage


def _aliases(name: str) -> AliasChoices:
    return AliasChoices(name, to_camel(name))


class OptionsIn(Schema):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    provider: str | None = None
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(
        default=None, ge=1, le=1_000_000, validation_alias=_aliases("max_tokens")
    )
    fallback_provider: str | None = Field(
        default=None, validation_alias=_aliases("fallback_provider")
    )
    fallback_model: str | None = Field(default=None, validation_alias=_aliases("fallback_model"))
    prompt_variables: dict[str, Any] | None = Field(
        default=None, validation_alias=_aliases("prompt_variables")
    )

    def route_options(self) -> RouteOptions:
        return RouteOptions(
            provider=self.provider,
            model=self.model,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            fallback_provider=self.fallback_provider,
            fallback_model=self.fallback_model,
        )


class _RequestBase(Schema):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    context_id: str = Field(
        default="default", min_length=1, max_length=512, validation_alias=_aliases("context_id")
    )
    task_type: str = Field(
        default="default", min_length=1, max_length=100, validation_alias=_aliases("task_type")
    )
    component: str | None = Field(default=None, max_length=100)
    options: OptionsIn | None = None
    prompt_id: str | None = Field(default=None, validation_alias=_aliases("prompt_id"))

    def _llm_request(self, messages: tuple[ChatMessage, ...], *, whole: bool) -> LLMRequest:
        options = self.options
        return LLMRequest(
            messages=messages,
            context_id=self.context_id,
            component=self.component,
            task_type=self.task_type,
            options=options.route_options() if options else RouteOptions(),
            prompt_id=self.prompt_id,
            prompt_variables=options.prompt_variables if options else None,
            whole_conversation=whole,
        )


class StreamIn(_RequestBase):
    # Input limits (RHETOR_MAX_MESSAGE_CHARS, RHETOR_MAX_CHAT_MESSAGES): a 422 naming the field.
    message: str = Field(min_length=1, max_length=settings.RHETOR_MAX_MESSAGE_CHARS)

    def llm_request(self) -> LLMRequest:
        return self._llm_request((ChatMessage("user", self.message),), whole=False)

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message must not be blank")
        return value


class MessageIn(StreamIn):
    streaming: bool = False


class ChatMessageIn(Schema):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant", "system"]
    content: str = Field(max_length=settings.RHETOR_MAX_MESSAGE_CHARS)


class ChatIn(_RequestBase):
    messages: list[ChatMessageIn] = Field(
        min_length=1, max_length=settings.RHETOR_MAX_CHAT_MESSAGES
    )
    streaming: bool = False

    def llm_request(self) -> LLMRequest:
        messages = tuple(ChatMessage(m.role, m.content) for m in self.messages)
        return self._llm_request(messages, whole=True)

    @field_validator("messages")
    @classmethod
    def _has_user_turn(cls, value: list[ChatMessageIn]) -> list[ChatMessageIn]:
        if not any(m.role == "user" and m.content.strip() for m in value):
            raise ValueError("messages must contain at least one non-empty user message")
        return value


class UsageOut(Schema):
    input_tokens: int
    output_tokens: int
    cost: str | None = None


class MessageOut(Schema):
    message: str
    model: str
    provider: str
    context: str
    finished: bool
    timestamp: str
    usage: UsageOut
    fallback: bool
    budget_warnings: list[str]
    # Present (true) only when the database was away: the exchange is stored once it returns.
    exchange_pending: bool | None = None


class StreamEventOut(Schema):
    """One server-sent event of /stream (and of /message or /chat with streaming): text
    chunks with done=false, then one terminal event with done=true and usage, fallback and
    budget_warnings -- or, when the provider fails mid-stream, with error instead."""

    chunk: str
    model: str
    provider: str
    context: str
    done: bool
    timestamp: str
    usage: UsageOut | None = None
    fallback: bool | None = None
    budget_warnings: list[str] | None = None
    exchange_pending: bool | None = None
    error: str | None = None


def sse_documentation(description: str) -> dict[str, Any]:
    """openapi_extra for an operation whose 200 is JSON or, when streaming, SSE events."""
    payload = StreamEventOut.model_json_schema(ref_template="#/components/schemas/{model}")
    payload.pop("$defs", None)
    # One event of the stream, as OpenAPI 3.2 describes server-sent events: its `data`
    # line is the JSON object above.
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": payload,
            }
        },
    }
    return {
        "responses": {
            200: {
                "description": description,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/MessageOut"}},
                    "text/event-stream": {"schema": event},
                },
            }
        }
    }


class ModelOut(Schema):
    id: str
    name: str


class ProviderOut(Schema):
    name: str
    available: bool
    models: list[ModelOut]


class ProvidersOut(Schema):
    providers: dict[str, ProviderOut]
    default_provider: str
    default_model: str


class ProviderSetIn(Schema):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    provider_id: str = Field(min_length=1, validation_alias=_aliases("provider_id"))
    model_id: str | None = Field(default=None, validation_alias=_aliases("model_id"))


class ProviderSetOut(Schema):
    success: bool
    provider: str
    model: str


class ErrorOut(Schema):
    error: str
    code: str


# --- WebSocket payloads (TEKTON_CONTRACT.md, "WebSocket /ws") --------------------------------

_CONTEXT_ALIASES = AliasChoices("context", "context_id", "contextId")


class WsMessageIn(StreamIn):
    """LLM_REQUEST payload: `context`, not `context_id`; streaming defaults to true."""

    context_id: str = Field(
        default="default", min_length=1, max_length=512, validation_alias=_CONTEXT_ALIASES
    )
    streaming: bool = True


class WsChatIn(ChatIn):
    """CHAT_REQUEST payload: like LLM_REQUEST with `messages`."""

    context_id: str = Field(
        default="default", min_length=1, max_length=512, validation_alias=_CONTEXT_ALIASES
    )
    streaming: bool = True


class WsContextIn(Schema):
    """SUBSCRIBE / UNSUBSCRIBE payload."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    context_id: str = Field(min_length=1, max_length=512, validation_alias=_CONTEXT_ALIASES)

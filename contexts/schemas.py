"""Schemas of the context API (TEKTON_CONTRACT.md, "Contexts")."""

from typing import Any, Literal

from django.conf import settings
from ninja import Schema
from pydantic import AliasChoices, ConfigDict, Field


class ErrorOut(Schema):
    model_config = ConfigDict(extra="allow")

    error: str
    code: str


class ContextListIn(Schema):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=500)
    # Bounded: an offset beyond the database's integer range was a 500 (found by fuzzing).
    offset: int = Field(default=0, ge=0, le=1_000_000_000)
    component: str | None = Field(default=None, max_length=100)


class ContextOut(Schema):
    id: str
    created_at: str
    updated_at: str
    active_message_count: int
    archived_message_count: int
    total_messages: int
    summary_count: int
    latest_summary: str | None
    token_count: int
    metadata: dict[str, Any]


class ContextListOut(Schema):
    count: int
    limit: int
    offset: int
    next_offset: int | None
    contexts: list[ContextOut]


class ContextGetIn(Schema):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=20, ge=1, le=1000)
    include_metadata: bool = Field(
        default=False, validation_alias=AliasChoices("include_metadata", "includeMetadata")
    )


class StoredMessageOut(Schema):
    """A message as stored in a context (an answer of /message is llm's MessageOut)."""

    id: int
    role: str
    content: str
    timestamp: str
    metadata: dict[str, Any] | None = None


class ContextGetOut(Schema):
    context_id: str
    count: int
    messages: list[StoredMessageOut]


class ContextDeleteOut(Schema):
    success: bool
    context_id: str


class SearchQueryIn(Schema):
    query: str | None = Field(default=None, max_length=2000)
    limit: int | None = Field(default=None, ge=1, le=100)


class SearchBodyIn(Schema):
    """The query may also come in a JSON body; extra keys are ignored."""

    model_config = ConfigDict(extra="ignore")

    query: str | None = Field(default=None, max_length=2000)
    limit: int | None = Field(default=None, ge=1, le=100)


class SearchResultOut(Schema):
    message: StoredMessageOut
    score: float


class SearchOut(Schema):
    context_id: str
    query: str
    count: int
    results: list[SearchResultOut]


class SummarizeIn(Schema):
    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(
        default=150, ge=16, le=4000, validation_alias=AliasChoices("max_tokens", "maxTokens")
    )


class SummarizeOut(Schema):
    context_id: str
    summary: str


class ContextCreateIn(Schema):
    """`POST /contexts`: an empty conversation. Without `context_id`, one is made as
    `<component>:<name>-<random>`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    context_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        validation_alias=AliasChoices("context_id", "contextId", "context"),
    )
    name: str | None = Field(default=None, max_length=200)
    component: str | None = Field(default=None, min_length=1, max_length=100)
    metadata: dict[str, Any] = Field(default_factory=dict)


class MessageAddIn(Schema):
    """`POST /contexts/{id}/messages`: one message appended as is (no model is asked)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant", "system"] = "user"
    content: str = Field(min_length=1, max_length=settings.RHETOR_MAX_MESSAGE_CHARS)
    metadata: dict[str, Any] = Field(default_factory=dict)


class MessageAddOut(Schema):
    context_id: str
    message: StoredMessageOut


class RoleStatsOut(Schema):
    messages: int
    tokens: int


class ContextAnalysisOut(Schema):
    context_id: str
    component: str
    total_messages: int
    active_message_count: int
    archived_message_count: int
    total_tokens: int
    active_tokens: int
    average_tokens_per_message: float
    roles: dict[str, RoleStatsOut]
    providers: dict[str, int]
    first_message_at: str | None
    last_message_at: str | None
    duration_seconds: float | None
    summary_count: int
    latest_summary: str | None
    truncated_messages: int
    partial_replies: int

"""Schemas of the context API (TEKTON_CONTRACT.md, "Contexts")."""

from typing import Any

from ninja import Schema
from pydantic import AliasChoices, ConfigDict, Field


class ErrorOut(Schema):
    model_config = ConfigDict(extra="allow")

    error: str
    code: str


class ContextListIn(Schema):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0)
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


class MessageOut(Schema):
    id: int
    role: str
    content: str
    timestamp: str
    metadata: dict[str, Any] | None = None


class ContextGetOut(Schema):
    context_id: str
    count: int
    messages: list[MessageOut]


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
    message: MessageOut
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

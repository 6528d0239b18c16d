"""OpenAI-compatible endpoints: `POST /v1/chat/completions` and `GET /v1/models`.

A door of the gateway (llm/gateway/core.py): any OpenAI SDK pointed at `<rhetor>/v1` gets
Rhetor's routing, fallbacks, budgets, metering, system prompts and (with
`X-Rhetor-Context`) stored contexts, exactly like /message. llm/openai_format.py holds
the wire format.

The body is parsed here rather than by a ninja schema so that every refusal comes back in
OpenAI's error shape (`{"error": {"message", "type", "param", "code"}}`) with the status
the SDK maps to its typed exceptions.
"""

import json
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from ninja import Router

from access.auth import GATEWAY
from budget.policies import usd
from llm.errors import StreamInterrupted
from llm.gateway import LLMResult, LLMStream, http_caller, llm_complete, llm_stream_open
from llm.openai_format import (
    ChatCall,
    ChunkWriter,
    OpenAIError,
    completion_body,
    error_answer,
    internal_error_body,
    model_entry,
    parse_chat_request,
    route_names,
)
from llm.providers import all_providers
from llm.route_table import aroute_table
from llm.routes import RouteTable
from rhetor_site.errors import RhetorError

logger = logging.getLogger("llm")

router = Router(tags=["openai"], auth=GATEWAY)

_DOC_RESPONSES = {
    "responses": {
        200: {
            "description": "`chat.completion` JSON, or with `stream: true` text/event-stream "
            "of `chat.completion.chunk` frames ending with `data: [DONE]`.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        400: {"description": "OpenAI error shape: invalid or unsupported parameter"},
        404: {"description": "OpenAI error shape: unknown model (code model_not_found)"},
        429: {"description": "OpenAI error shape: budget exceeded (code insufficient_quota)"},
        502: {"description": "OpenAI error shape: the provider failed"},
        503: {"description": "OpenAI error shape: no provider could answer"},
    },
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["model", "messages"],
                    "properties": {
                        "model": {"type": "string", "example": "rhetor/chat"},
                        "messages": {"type": "array", "items": {"type": "object"}},
                        "stream": {"type": "boolean"},
                        "stream_options": {"type": "object"},
                        "temperature": {"type": "number"},
                        "max_tokens": {"type": "integer"},
                        "max_completion_tokens": {"type": "integer"},
                    },
                }
            }
        },
    },
    "parameters": [
        {"in": "header", "name": name, "required": False, "schema": {"type": "string"}}
        for name in ("X-Rhetor-Context", "X-Rhetor-Component", "X-Rhetor-Task")
    ],
}


async def _routes() -> RouteTable:
    return await aroute_table()


def _json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    response = HttpResponse(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        status=status,
        content_type="application/json",
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _error_response(exc: RhetorError) -> HttpResponse:
    answer = error_answer(exc)
    return _json(answer.body, answer.status, answer.headers)


def _rhetor_headers(
    *, provider: str, fallback: bool, warnings: list[str] | tuple[str, ...]
) -> dict[str, str]:
    headers = {"X-Rhetor-Provider": provider, "X-Rhetor-Fallback": "true" if fallback else "false"}
    if warnings:
        headers["X-Rhetor-Budget-Warnings"] = json.dumps(list(warnings))
    return headers


async def _frames(stream: LLMStream, call: ChatCall) -> AsyncIterator[bytes]:
    writer = ChunkWriter(call, model=stream.model)
    yield writer.role()
    try:
        # aclosing: a client that goes away closes the service's generator at once, which
        # cancels the upstream call, meters what was delivered and stores the partial reply.
        async with aclosing(stream.chunks()) as chunks:
            async for text in chunks:
                yield writer.text(text)
    except StreamInterrupted as exc:
        yield writer.error(exc.message, exc.code)
        return
    result: LLMResult | None = stream.result
    assert result is not None  # noqa: S101 - chunks() completed
    yield writer.finish(result)
    if call.include_usage:
        yield writer.usage(result)
    yield ChunkWriter.DONE


def _stream_response(stream: LLMStream, call: ChatCall) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_frames(stream, call), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    headers = _rhetor_headers(
        provider=stream.provider, fallback=stream.fallback, warnings=stream.warnings
    )
    for name, value in headers.items():
        response[name] = value
    return response


@router.post(
    "/chat/completions",
    summary="OpenAI-compatible chat completion (JSON or SSE)",
    openapi_extra=_DOC_RESPONSES,
)
async def chat_completion_create(request: HttpRequest) -> HttpResponseBase:
    try:
        call = parse_chat_request(request.body, request.headers, routes=await _routes())
        if call.stream:
            stream = await llm_stream_open(call.request, http_caller(request))
            return _stream_response(stream, call)
        result = await llm_complete(call.request, http_caller(request))
    except RhetorError as exc:
        return _error_response(exc)
    except RequestDataTooBig:
        raise  # the site's handler answers 413 in OpenAI's shape
    except Exception:
        logger.exception("Unhandled error on POST /v1/chat/completions")
        return _json(internal_error_body(), 500)
    headers = _rhetor_headers(
        provider=result.provider, fallback=result.fallback, warnings=result.budget_warnings
    )
    if result.cost_nanos is not None:
        headers["X-Rhetor-Cost"] = usd(result.cost_nanos)
    if result.exchange_pending:  # stored in its context once the database returns
        headers["X-Rhetor-Exchange"] = "pending"
    return _json(completion_body(result, call), headers=headers)


async def _model_entries() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    for pid, provider in all_providers().items():
        if not await provider.is_available():
            continue
        for info in provider.models():
            if info.id not in seen:
                seen.add(info.id)
                entries.append(model_entry(info.id, pid))
    entries += [model_entry(f"rhetor/{name}", "rhetor") for name in route_names(await _routes())]
    return entries


@router.get("/models", summary="OpenAI-compatible model list: served models and task routes")
async def model_list(request: HttpRequest) -> HttpResponse:
    return _json({"object": "list", "data": await _model_entries()})


@router.get(
    "/models/{path:model_id}",
    summary="One model or task route, OpenAI-compatible",
    openapi_extra={
        "responses": {
            200: {"description": "The model, as an entry of GET /v1/models"},
            404: {"description": "OpenAI error shape: unknown model (code model_not_found)"},
        }
    },
)
async def model_get(request: HttpRequest, model_id: str) -> HttpResponse:
    for entry in await _model_entries():
        if entry["id"] == model_id:
            return _json(entry)
    return _error_response(
        OpenAIError(
            f"The model {model_id!r} does not exist",
            status=404,
            param="model",
            code="model_not_found",
        )
    )

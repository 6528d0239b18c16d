"""Messaging and provider endpoints (TEKTON_CONTRACT.md, "Messaging" and "Providers").

Operations that wait on a provider are async; each one parses, calls the request service
and shapes the answer. /stream and streaming /message answer with server-sent events,
opened only after the provider produced its first event, so every failure before that is
a real HTTP error.
"""

from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from ninja import Router

from access.auth import (
    ANY_KEY,
    BUDGET_ADMIN,
    MESSAGES,
    PUBLIC,
    aacting_request,
    atokens_settle,
    metered_stream_response,
    request_charge,
    request_principal,
    usage_tokens,
)
from budget.selectors import budget_status
from llm.providers import all_providers
from llm.router import REAL_PROVIDERS
from llm.schemas import (
    ChatIn,
    ErrorOut,
    MessageIn,
    MessageOut,
    ProviderSetIn,
    ProviderSetOut,
    ProvidersOut,
    StreamIn,
)
from llm.selectors import default_choice_get, provider_availability
from llm.services import default_model_set, llm_complete, llm_stream_open
from llm.streaming import iso_timestamp, message_payload, sse_response
from prompts.selectors import prompt_list, template_list

router = Router(tags=["llm"], auth=MESSAGES)

ERRORS: dict[int, type[ErrorOut]] = {
    400: ErrorOut,
    401: ErrorOut,
    402: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    422: ErrorOut,
    429: ErrorOut,
    502: ErrorOut,
    503: ErrorOut,
}


async def _answer(http: HttpRequest, payload: MessageIn | ChatIn | StreamIn) -> HttpResponseBase:
    charge = request_charge(http)
    try:
        # A key pinned to components acts only as them (403 otherwise).
        request = await aacting_request(request_principal(http), payload.llm_request())
        if getattr(payload, "streaming", True):
            stream = await llm_stream_open(request)
            return metered_stream_response(http, sse_response(stream), stream)
        result = await llm_complete(request)
    except Exception:
        await atokens_settle(charge, 0)  # not served: its estimated tokens are given back
        raise
    await atokens_settle(charge, usage_tokens(result.usage))
    return JsonResponse(message_payload(result))


@router.post(
    "/message",
    response={200: MessageOut, **ERRORS},
    summary="Send a message (JSON, or SSE with streaming: true)",
)
async def message_send(request: HttpRequest, payload: MessageIn) -> HttpResponseBase:
    return await _answer(request, payload)


@router.post("/chat", response={200: MessageOut, **ERRORS}, summary="Send a chat conversation")
async def chat_send(request: HttpRequest, payload: ChatIn) -> HttpResponseBase:
    return await _answer(request, payload)


@router.post(
    "/stream",
    response={200: MessageOut, **ERRORS},
    summary="Send a message and stream the answer as server-sent events",
    openapi_extra={
        "responses": {
            200: {
                "description": "text/event-stream: data lines with chunk, model, provider, "
                "context, done, timestamp; the terminal event has done=true and usage; a "
                "failure mid-stream is an event with error and done=true.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        }
    },
)
async def stream_send(request: HttpRequest, payload: StreamIn) -> HttpResponseBase:
    return await _answer(request, payload)


# --- Providers -----------------------------------------------------------------------------


@router.get(
    "/providers",
    response=ProvidersOut,
    summary="Providers, their models and the default",
    auth=ANY_KEY,
)
async def providers_list(request: HttpRequest) -> dict[str, Any]:
    available = await provider_availability()
    providers = {
        pid: {
            "name": p.name,
            "available": available[pid],
            "models": [{"id": m.id, "name": m.name} for m in p.models()],
        }
        for pid, p in all_providers().items()
    }
    default_provider, default_model = await default_choice_get(available)
    return {
        "providers": providers,
        "default_provider": default_provider,
        "default_model": default_model,
    }


@router.post(
    "/provider",
    response={200: ProviderSetOut, **ERRORS},
    summary="Set the default provider",
    auth=BUDGET_ADMIN,
)
def provider_set(request: HttpRequest, payload: ProviderSetIn) -> dict[str, Any]:
    chosen = default_model_set(provider=payload.provider_id, model=payload.model_id)
    return {"success": True, "provider": chosen.provider, "model": chosen.model}


# --- Service status ------------------------------------------------------------------------


def _database_ok() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any driver error means unhealthy
        return f"database unreachable: {exc.__class__.__name__}"
    return None


@router.get("/health", response={200: dict, 503: dict}, summary="Health check", auth=PUBLIC)
async def health_get(request: HttpRequest) -> HttpResponse:
    from django.conf import settings

    from llm.circuit import breaker_summary

    problem = await sync_to_async(_database_ok)()
    body: dict[str, Any] = {
        "status": "unhealthy" if problem else "healthy",
        "component": "rhetor",
        "version": settings.RHETOR_VERSION,
        "timestamp": iso_timestamp(),
        "providers": await provider_availability(),
        # "provider/model" -> "open" | "half_open" for every circuit that is not closed.
        "circuit_breakers": breaker_summary(),
    }
    if problem:
        body["reason"] = problem
    return JsonResponse(body, status=503 if problem else 200)


ENDPOINTS = [
    "GET /",
    "GET /health",
    "GET /providers",
    "POST /provider",
    "POST /message",
    "POST /stream",
    "POST /chat",
    "GET /ws (WebSocket)",
    "GET /templates",
    "POST /templates",
    "GET /prompts",
    "POST /prompts",
    "GET /contexts",
    "GET /budget",
    "GET /docs",
]


def _catalogue_counts() -> dict[str, Any]:
    return {
        "templates": template_list().count(),
        "prompts": prompt_list().count(),
        "budget_today": budget_status().daily.as_payload(),
    }


@router.get("/", summary="Service information", auth=PUBLIC)
async def root_get(request: HttpRequest) -> dict[str, Any]:
    from django.conf import settings

    available = await provider_availability()
    default_provider, default_model = await default_choice_get(available)
    counts = await sync_to_async(_catalogue_counts)()
    return {
        "name": "Rhetor",
        "description": "LLM Management System for Tekton",
        "version": settings.RHETOR_VERSION,
        "status": "running",
        "endpoints": ENDPOINTS,
        "providers": available,
        "real_providers_configured": any(available.get(p) for p in REAL_PROVIDERS),
        "default_provider": default_provider,
        "default_model": default_model,
        "template_count": counts["templates"],
        "prompt_count": counts["prompts"],
        "budget": {"daily": counts["budget_today"]},
    }

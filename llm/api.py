"""Messaging and provider endpoints (TEKTON_CONTRACT.md, "Messaging" and "Providers").

The messaging operations are a door of the gateway (llm/gateway/core.py): each parses its
body into an LLMRequest, calls the gateway as the authenticated caller and writes the
answer as JSON or, for /stream and streaming /message, as server-sent events opened only
after the provider produced its first event, so every failure before that is a real HTTP
error. `POST /prompts/compare` with `run: true` is a door too: each prompt's reply comes
through the same gateway.
"""

import asyncio
import uuid
from dataclasses import replace
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from ninja import Router

from access.auth import ANY_KEY, BUDGET_ADMIN, GATEWAY, PROMPTS_COMPARE, PUBLIC
from access.errors import Forbidden, RateLimited
from budget.policies import usd
from budget.selectors import budget_status
from budget.services import pending_settles
from contexts.outbox import kept_exchanges
from llm.gateway import (
    Caller,
    LLMRequest,
    RouteOptions,
    http_caller,
    llm_complete,
    llm_stream_open,
)
from llm.providers import all_providers
from llm.providers.base import ChatMessage
from llm.routes import REAL_PROVIDERS
from llm.schemas import (
    ChatIn,
    ErrorOut,
    MessageIn,
    MessageOut,
    ProviderSetIn,
    ProviderSetOut,
    ProvidersOut,
    StreamIn,
    sse_documentation,
)
from llm.selectors import default_choice_get, provider_availability
from llm.services import default_model_set
from llm.streaming import iso_timestamp, message_payload, sse_response
from prompts.comparison import prompt_comparison
from prompts.schemas import (
    ComparedPromptOut,
    CompareRunOut,
    PromptCompareIn,
    PromptCompareOut,
    RunUsageOut,
)
from prompts.selectors import prompt_list, template_list
from rhetor_site.db import released
from rhetor_site.errors import RhetorError
from rhetor_site.lifecycle import is_draining

router = Router(tags=["llm"], auth=GATEWAY)

aprompt_comparison = sync_to_async(released(prompt_comparison))
# What a comparison run may choose of the model (the rest of `options` is ignored).
COMPARE_RUN_OPTIONS = frozenset({"provider", "model", "temperature", "max_tokens"})

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
    request, caller = payload.llm_request(), http_caller(http)
    if getattr(payload, "streaming", True):
        return sse_response(await llm_stream_open(request, caller))
    return JsonResponse(message_payload(await llm_complete(request, caller)))


@router.post(
    "/message",
    response={200: MessageOut, **ERRORS},
    summary="Send a message (JSON, or SSE with streaming: true)",
    openapi_extra=sse_documentation("The reply as JSON, or with streaming: true as SSE events."),
)
async def message_send(request: HttpRequest, payload: MessageIn) -> HttpResponseBase:
    return await _answer(request, payload)


@router.post(
    "/chat",
    response={200: MessageOut, **ERRORS},
    summary="Send a chat conversation",
    openapi_extra=sse_documentation("The reply as JSON, or with streaming: true as SSE events."),
)
async def chat_send(request: HttpRequest, payload: ChatIn) -> HttpResponseBase:
    return await _answer(request, payload)


@router.post(
    "/stream",
    response={200: MessageOut, **ERRORS},
    summary="Send a message and stream the answer as server-sent events",
    openapi_extra=sse_documentation(
        "text/event-stream: one event per chunk, then a terminal event with done=true and "
        "usage, or with error when the provider fails mid-stream."
    ),
)
async def stream_send(request: HttpRequest, payload: StreamIn) -> HttpResponseBase:
    return await _answer(request, payload)


# --- Prompt comparison ----------------------------------------------------------------------


@router.post(
    "/prompts/compare",
    response={200: PromptCompareOut, **ERRORS},
    summary="Compare two prompt versions; with run, each one's reply from the same model",
    tags=["prompts"],
    auth=PROMPTS_COMPARE,
)
async def prompt_compare(request: HttpRequest, payload: PromptCompareIn) -> dict[str, Any]:
    """Both prompts side by side with a unified diff, their variables and lengths (needs
    `prompts:read`); with `run: true` and a `message`, each prompt's reply from the same
    route and model, asked through the gateway like any message (needs `messages` too,
    and a pinned key runs only as its own components)."""
    comparison, component = await aprompt_comparison(payload)
    if payload.run:
        comparison["results"] = await _compare_run(
            http_caller(request), payload, comparison, component
        )
    return comparison


async def _compare_run(
    caller: Caller, payload: PromptCompareIn, comparison: dict[str, Any], component: str
) -> dict[str, CompareRunOut]:
    options = RouteOptions(**{k: v for k, v in payload.options.items() if k in COMPARE_RUN_OPTIONS})
    results: dict[str, CompareRunOut] = {}
    for key in ("prompt1", "prompt2"):
        compared: ComparedPromptOut = comparison[key]
        prompt_id, version = compared.prompt_id, compared.version
        request = LLMRequest(
            messages=(ChatMessage("user", payload.message or ""),),
            # Not stored: a comparison never writes to a conversation. (The id is the
            # component's, as a pinned key may only act on its components' contexts.)
            context_id=f"{component or 'compare'}:compare-{uuid.uuid4().hex}",
            store=False,
            component=component,
            task_type=payload.task_type,
            options=options,
            prompt_id=prompt_id,
            prompt_variables=payload.variables or None,
        )
        try:
            result = await llm_complete(request, caller)
        except RhetorError as exc:
            if isinstance(exc, Forbidden | RateLimited):
                raise  # the caller may not run it at all: 403 / 429 for the whole request
            results[key] = CompareRunOut(
                prompt_id=prompt_id,
                version=version,
                message=None,
                model=None,
                provider=None,
                usage=None,
                error=exc.message,
                code=exc.code,
            )
            continue
        # The second prompt is answered by the same model as the first, even after a
        # fallback, so the replies differ only by the prompt.
        options = replace(options, provider=result.provider, model=result.model)
        results[key] = CompareRunOut(
            prompt_id=prompt_id,
            version=version,
            message=result.text,
            model=result.model,
            provider=result.provider,
            usage=RunUsageOut(
                input_tokens=result.usage.input_tokens,
                output_tokens=result.usage.output_tokens,
                cost=usd(result.cost_nanos) if result.cost_nanos is not None else None,
            ),
        )
    return results


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


HEALTH_DATABASE_SECONDS = 0.8  # /health answers within a second, whatever the database does


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

    try:  # a load balancer gets its answer within a second, whatever the database does
        problem = await asyncio.wait_for(sync_to_async(_database_ok)(), HEALTH_DATABASE_SECONDS)
    except TimeoutError:
        problem = f"database did not answer within {HEALTH_DATABASE_SECONDS}s"
    if is_draining():  # a graceful shutdown: a load balancer should send nothing more
        problem = "draining: this worker is shutting down"
    body: dict[str, Any] = {
        "status": "unhealthy" if problem else "healthy",
        "component": "rhetor",
        "version": settings.RHETOR_VERSION,
        "timestamp": iso_timestamp(),
        "providers": await provider_availability(),
        # "provider/model" -> "open" | "half_open" for every circuit that is not closed.
        "circuit_breakers": breaker_summary(),
        # Writes this worker keeps until the database answers again (an outage's backlog).
        "pending_writes": {"usage_records": pending_settles(), "exchanges": kept_exchanges()},
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

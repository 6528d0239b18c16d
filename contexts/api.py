"""The context API (TEKTON_CONTRACT.md, "Contexts").

A context id is any string (`ergon:default`, ids with slashes or spaces, URL-encoded by
the client); the routes take the rest of the path, so the operations on a context
(`/search`, `/summarize`) are declared before the bare `/contexts/{id}`.
Reading never creates a context: an unknown id is a 404.
"""

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Query, Router
from ninja.responses import Status
from pydantic import ValidationError as PydanticValidationError

from access.auth import CONTEXTS, listing_components, request_principal
from contexts import selectors, services
from contexts.errors import CONTEXT_NOT_FOUND, SEARCH_QUERY_REQUIRED, ContextNotFound
from contexts.models import Context, Message
from contexts.pinning import acontext_guard, component_for, context_guard
from contexts.schemas import (
    ContextAnalysisOut,
    ContextCreateIn,
    ContextDeleteOut,
    ContextGetIn,
    ContextGetOut,
    ContextListIn,
    ContextListOut,
    ContextOut,
    ErrorOut,
    MessageAddIn,
    MessageAddOut,
    SearchBodyIn,
    SearchOut,
    SearchQueryIn,
    SummarizeIn,
    SummarizeOut,
)
from rhetor_site.errors import InvalidInput
from rhetor_site.parsing import parse_json

# A pinned key (without contexts:admin) reaches only its components' contexts.
router = Router(tags=["contexts"], auth=CONTEXTS)

SEARCH_DEFAULT_LIMIT = 5


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _context_out(context: Context) -> dict[str, Any]:
    metadata = dict(context.metadata or {})
    metadata.setdefault("component", context.component)
    return {
        "id": context.context_id,
        "created_at": _iso(context.created_at),
        "updated_at": _iso(context.updated_at),
        "active_message_count": context.active_message_count,
        "archived_message_count": context.archived_message_count,
        "total_messages": context.message_count,
        "summary_count": context.summary_count,
        "latest_summary": context.latest_summary.content if context.latest_summary else None,
        "token_count": context.token_count,
        "metadata": metadata,
    }


def _message_out(message: Message, *, include_metadata: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": message.seq,
        "role": message.role,
        "content": message.content,
        "timestamp": _iso(message.created_at),
    }
    if include_metadata:
        out["metadata"] = {
            **message.metadata,
            "tokens": message.tokens,
            "provider": message.provider,
            "model": message.model,
            "archived": message.archived,
        }
    return out


def _search_body(request: HttpRequest) -> SearchBodyIn | None:
    """The optional JSON body of a search ({"query", "limit"}); the query string wins."""
    if request.content_type != "application/json" or not request.body.strip():
        return None
    data = parse_json(request.body)  # what every body gets: 400 invalid_json, NUL refused
    try:
        return SearchBodyIn.model_validate(data)
    except PydanticValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(str(p) for p in problem.get("loc", ())) or "body"
        raise InvalidInput(f"Invalid request: {field}: {problem['msg']}", field=field) from exc


def _context_or_404(context_id: str) -> Context:
    context = selectors.context_get(context_id=context_id)
    if context is None:
        raise ContextNotFound(CONTEXT_NOT_FOUND.format(context_id=context_id))
    return context


@router.get("/contexts", response={200: ContextListOut, 422: ErrorOut}, operation_id="context_list")
def context_list(request: HttpRequest, filters: Query[ContextListIn]) -> dict[str, Any]:
    contexts = selectors.context_list(component=filters.component)
    allowed = listing_components(request, filters.component, admin_scope="contexts:admin")
    if allowed is not None:
        contexts = contexts.filter(component__in=allowed)
    count = contexts.count()
    page = list(contexts[filters.offset : filters.offset + filters.limit])
    end = filters.offset + len(page)
    return {
        "count": count,
        "limit": filters.limit,
        "offset": filters.offset,
        "next_offset": end if end < count else None,
        "contexts": [_context_out(c) for c in page],
    }


@router.post(
    "/contexts/{path:context_id}/search",
    response={200: SearchOut, 404: ErrorOut, 422: ErrorOut},
    operation_id="context_search",
    # The query may also come in an optional JSON body, which the operation reads itself.
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": SearchBodyIn.model_json_schema()}},
        }
    },
)
def context_search(
    request: HttpRequest, context_id: str, params: Query[SearchQueryIn]
) -> dict[str, Any]:
    context_guard(request, context_id)
    payload = _search_body(request)
    query = params.query or (payload.query if payload else None) or ""
    limit = params.limit or (payload.limit if payload else None) or SEARCH_DEFAULT_LIMIT
    if not query.strip():
        raise InvalidInput(SEARCH_QUERY_REQUIRED, field="query")
    context = _context_or_404(context_id)
    results = selectors.context_search(context=context, query=query, limit=limit)
    return {
        "context_id": context.context_id,
        "query": query,
        "count": len(results),
        "results": [
            {"message": _message_out(r.message, include_metadata=True), "score": r.score}
            for r in results
        ],
    }


@router.post(
    "/contexts/{path:context_id}/summarize",
    response={200: SummarizeOut, 404: ErrorOut, 422: ErrorOut},
    operation_id="context_summarize",
)
async def context_summarize(
    request: HttpRequest, context_id: str, params: Query[SummarizeIn]
) -> dict[str, Any]:
    await acontext_guard(request, context_id)
    summary = await services.acontext_summarize(context_id=context_id, max_tokens=params.max_tokens)
    return {"context_id": context_id, "summary": summary.content}


@router.post(
    "/contexts",
    response={201: ContextOut, 409: ErrorOut, 422: ErrorOut},
    operation_id="context_create",
)
def context_create(request: HttpRequest, payload: ContextCreateIn) -> Status[dict[str, Any]]:
    """An empty conversation (the Python client's `create_conversation`)."""
    principal = request_principal(request)
    component = payload.component
    if not principal.has_scope("contexts:admin"):
        component = component_for(
            principal, component=component, context_id=payload.context_id or ""
        )
    context = services.context_create(
        context_id=payload.context_id,
        component=component,
        name=payload.name,
        metadata=payload.metadata,
    )
    return Status(201, _context_out(_context_or_404(context.context_id)))


@router.post(
    "/contexts/{path:context_id}/messages",
    response={201: MessageAddOut, 404: ErrorOut, 422: ErrorOut},
    operation_id="context_message_add",
)
async def context_message_add(
    request: HttpRequest, context_id: str, payload: MessageAddIn
) -> Status[dict[str, Any]]:
    """Append one message as is, without asking a model; subscribers of the context see
    it like any other message."""
    await acontext_guard(request, context_id)
    message = await services.acontext_message_add(
        context_id=context_id,
        role=payload.role,
        content=payload.content,
        metadata=payload.metadata,
    )
    return Status(
        201,
        {"context_id": context_id, "message": _message_out(message, include_metadata=True)},
    )


@router.post(
    "/contexts/{path:context_id}/analyze",
    response={200: ContextAnalysisOut, 404: ErrorOut},
    operation_id="context_analyze",
)
def context_analyze(request: HttpRequest, context_id: str) -> dict[str, Any]:
    """Counts over the whole conversation: messages and tokens per role, the time span,
    the models that answered, truncated turns and partial replies."""
    context_guard(request, context_id)
    context = _context_or_404(context_id)
    analysis = selectors.context_analysis(context=context)
    total = analysis.total_messages
    first, last = analysis.first_message_at, analysis.last_message_at
    return {
        "context_id": context.context_id,
        "component": context.component,
        "total_messages": total,
        "active_message_count": context.active_message_count,
        "archived_message_count": context.archived_message_count,
        "total_tokens": analysis.total_tokens,
        "active_tokens": context.token_count,
        "average_tokens_per_message": round(analysis.total_tokens / total, 2) if total else 0.0,
        "roles": {
            role: {"messages": stats.messages, "tokens": stats.tokens}
            for role, stats in sorted(analysis.roles.items())
        },
        "providers": analysis.providers,
        "first_message_at": _iso(first) if first else None,
        "last_message_at": _iso(last) if last else None,
        "duration_seconds": (last - first).total_seconds() if first and last else None,
        "summary_count": context.summary_count,
        "latest_summary": context.latest_summary.content if context.latest_summary else None,
        "truncated_messages": analysis.truncated_messages,
        "partial_replies": analysis.partial_replies,
    }


@router.get(
    "/contexts/{path:context_id}",
    response={200: ContextGetOut, 404: ErrorOut, 422: ErrorOut},
    operation_id="context_get",
    exclude_none=True,
)
def context_get(
    request: HttpRequest, context_id: str, params: Query[ContextGetIn]
) -> dict[str, Any]:
    context_guard(request, context_id)
    context = _context_or_404(context_id)
    messages = selectors.context_messages_list(context=context, limit=params.limit)
    return {
        "context_id": context.context_id,
        "count": len(messages),
        "messages": [_message_out(m, include_metadata=params.include_metadata) for m in messages],
    }


@router.delete(
    "/contexts/{path:context_id}",
    response={200: ContextDeleteOut, 404: ErrorOut},
    operation_id="context_delete",
)
def context_delete(request: HttpRequest, context_id: str) -> dict[str, Any]:
    context_guard(request, context_id)
    services.context_delete(context_id=context_id)
    return {"success": True, "context_id": context_id}


# A context whose id itself ends in "/search" or "/summarize" is still readable and
# deletable: Django resolves those paths to the POST-only routes above, so the same
# paths also answer GET and DELETE for the whole id.
def _add_suffix_routes(suffix: str) -> None:
    def get_whole_id(
        request: HttpRequest, context_id: str, params: Query[ContextGetIn]
    ) -> dict[str, Any]:
        return context_get(request, f"{context_id}/{suffix}", params)

    def delete_whole_id(request: HttpRequest, context_id: str) -> dict[str, Any]:
        return context_delete(request, f"{context_id}/{suffix}")

    path = f"/contexts/{{path:context_id}}/{suffix}"
    router.get(
        path,
        response={200: ContextGetOut, 404: ErrorOut, 422: ErrorOut},
        operation_id=f"context_get_{suffix}_suffix",
        exclude_none=True,
        include_in_schema=False,
    )(get_whole_id)
    router.delete(
        path,
        response={200: ContextDeleteOut, 404: ErrorOut},
        operation_id=f"context_delete_{suffix}_suffix",
        include_in_schema=False,
    )(delete_whole_id)


_add_suffix_routes("search")
_add_suffix_routes("summarize")
_add_suffix_routes("messages")
_add_suffix_routes("analyze")

"""Server-sent events for the messaging API: one `data:` line of JSON per event, a
separate terminal event without text, and an in-band error event when a stream fails
after it began (TEKTON_CONTRACT.md, POST /stream)."""

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone

from budget.policies import usd
from llm.errors import StreamInterrupted
from llm.gateway import LLMResult, LLMStream


def iso_timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 in UTC with milliseconds and a `Z`: 2026-04-24T12:34:56.789Z."""
    moment = moment or timezone.now()
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def usage_payload(result: LLMResult) -> dict[str, Any]:
    return {
        "input_tokens": result.usage.input_tokens,
        "output_tokens": result.usage.output_tokens,
        "cost": usd(result.cost_nanos) if result.cost_nanos is not None else None,
    }


def pending_payload(result: LLMResult) -> dict[str, Any]:
    """`exchange_pending: true` when the exchange waits for the database to be stored."""
    return {"exchange_pending": True} if result.exchange_pending else {}


def message_payload(result: LLMResult) -> dict[str, Any]:
    """The standardized response format."""
    return {
        "message": result.text,
        "model": result.model,
        "provider": result.provider,
        "context": result.context_id,
        "finished": True,
        "timestamp": iso_timestamp(result.timestamp),
        "usage": usage_payload(result),
        "fallback": result.fallback,
        "budget_warnings": list(result.budget_warnings),
        **pending_payload(result),
    }


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


async def sse_events(stream: LLMStream) -> AsyncIterator[bytes]:
    base = {"model": stream.model, "provider": stream.provider, "context": stream.context_id}
    try:
        # aclosing: when the client goes away mid-stream, the service's generator is closed
        # at once (cancelling the upstream call and storing the partial reply), not at GC.
        async with aclosing(stream.chunks()) as chunks:
            async for chunk in chunks:
                yield _sse({"chunk": chunk, **base, "done": False, "timestamp": iso_timestamp()})
    except StreamInterrupted as exc:
        yield _sse(
            {"chunk": "", **base, "done": True, "error": exc.message, "timestamp": iso_timestamp()}
        )
        return
    result = stream.result
    assert result is not None  # noqa: S101 - chunks() completed
    yield _sse(
        {
            "chunk": "",
            **base,
            "model": result.model,
            "done": True,
            "timestamp": iso_timestamp(),
            "usage": usage_payload(result),
            "fallback": result.fallback,
            "budget_warnings": list(result.budget_warnings),
            **pending_payload(result),
        }
    )


def sse_response(stream: LLMStream) -> StreamingHttpResponse:
    """The stream is already open (its first event arrived), so errors before this point
    were real HTTP errors; from here on they travel in-band."""
    response = StreamingHttpResponse(sse_events(stream), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response

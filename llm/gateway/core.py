"""A request's whole life, in order. Every door (REST, SSE, WebSocket, /v1, a prompt
comparison, a conversation summary) translates its wire format into an LLMRequest and a
Caller, calls `llm_stream_open` or `llm_complete`, and writes what comes back in its own
format. None of them decides anything about scopes, rate limits, budgets or storage.

    1. admit     the caller's scope, a pinned key's components, the rate-limit charge
                 (llm/gateway/acting.py)
    2. prepare   route, system prompt and its variables, history window (prepare.py)
    3. plan      the models to try: the route's, the request's, the fallbacks (plan.py)
    4. open      per model: reserve the budget, call the provider, skip it when its circuit
                 is open or it fails before the first event (fallbacks.py, metering.py)
    5. stream    the provider's events, nothing written per chunk (stream.py)
    6. settle    the budget (once, even when the client went away) and the rate limit
    7. store     the exchange in its conversation, then compact it in the background
    8. publish   the new messages to subscribers; budget warnings and refusals to operators

Everything that can fail before the first chunk raises here, so an HTTP door answers with
a real status code instead of a broken 200 stream.
"""

from contextlib import aclosing

from budget.errors import BudgetExceeded
from budget.live import abudget_publish_exceeded, abudget_publish_warnings
from llm.gateway.acting import admit
from llm.gateway.fallbacks import open_stream
from llm.gateway.metering import BudgetMeter
from llm.gateway.prepare import prepare
from llm.gateway.request import Caller, LLMRequest, LLMResult
from llm.gateway.stream import LLMStream

ANYONE = Caller()  # the anonymous loopback caller: every scope, no pin, no limit


async def llm_stream_open(request: LLMRequest, caller: Caller = ANYONE) -> LLMStream:
    """Steps 1-4; the returned stream does 5-8 as it is read (`LLMStream.chunks`)."""
    admission = await admit(caller, request)
    request = admission.request
    origin = {
        "context": request.context_id,
        "component": request.resolved_component,
        "task_type": request.task_type,
    }
    try:
        prepared = await prepare(request)
        meter = BudgetMeter(prepared)
        opened = await open_stream(
            plan=prepared.plan, build_request=prepared.builder, metering=meter
        )
    except Exception as exc:
        await admission.settle(None, served=False)  # not served: its tokens are given back
        if isinstance(exc, BudgetExceeded):
            # Operators subscribed to budget events see the refusal as it happens.
            await abudget_publish_exceeded(body=exc.as_body(), origin=origin)
        raise
    stream = LLMStream(prepared, opened, meter, admission)
    await abudget_publish_warnings(
        warnings=stream.warnings, origin=origin, provider=stream.provider, model=stream.model
    )
    return stream


async def llm_complete(request: LLMRequest, caller: Caller = ANYONE) -> LLMResult:
    """The non-streaming path: the same stream, collected."""
    stream = await llm_stream_open(request, caller)
    async with aclosing(stream.chunks()) as chunks:
        async for _ in chunks:
            pass
    assert stream.result is not None  # noqa: S101 - chunks() sets it or raises
    return stream.result

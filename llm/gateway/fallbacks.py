"""Execution with fallbacks: try the plan's targets in order until one streams.

Retries and fallbacks live here and only here (the SDK clients are created with
max_retries=0); the circuit breakers (llm/circuit.py) skip models that keep failing.
"""

import asyncio
import dataclasses
import logging
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings

from budget.errors import BudgetExceeded
from llm.circuit import Admission, breakers
from llm.errors import NO_PROVIDER_ANSWERED, ProviderRejected, ProviderUnavailable
from llm.gateway.plan import Plan
from llm.providers import get_provider
from llm.providers.base import CompletionRequest, ProviderError, StreamEnd, StreamEvent, Usage
from llm.routes import Target
from rhetor_site.lifecycle import finish_soon

logger = logging.getLogger("llm")

# --- Execution with fallbacks ------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    target: Target
    # "unavailable", "circuit_open" (skipped by the breaker, nothing sent), "over_budget",
    # "failed", "ok"
    outcome: str
    error: str = ""
    status_code: int | None = None


def is_retryable(exc: BaseException) -> bool:
    """The one place that decides whether another model may succeed where this failed:
    connection errors, timeouts, 408/409/429, 5xx and broken payloads are; other 4xx
    (bad request, authentication, permission) are not."""
    return isinstance(exc, ProviderError) and exc.retryable


class Metering(Protocol):
    """Budget hooks around every attempt (R10): reserve the worst case before the call,
    settle to the actual usage after it. `reserve` raises BudgetExceeded when a limit
    cannot hold the attempt; `alternatives` names cheaper models to steer to then."""

    async def reserve(
        self, *, target: Target, request: CompletionRequest, attempt: int, lower_max_tokens: bool
    ) -> Any: ...

    def granted_max_tokens(self, hold: Any) -> int | None:
        """max_tokens as lowered by the reservation to fit the budget, or None."""

    async def settle(
        self, hold: Any, *, usage: Usage | None, status: str, error: str = ""
    ) -> int | None: ...

    async def alternatives(self, *, target: Target) -> list[Target]: ...


class NoMetering:
    """For calls that are not metered (unit tests of the router)."""

    async def reserve(
        self, *, target: Target, request: CompletionRequest, attempt: int, lower_max_tokens: bool
    ) -> Any:
        return None

    def granted_max_tokens(self, hold: Any) -> int | None:
        return None

    async def settle(
        self, hold: Any, *, usage: Usage | None, status: str, error: str = ""
    ) -> int | None:
        return None

    async def alternatives(self, *, target: Target) -> list[Target]:
        return []


@dataclass
class OpenedStream:
    """A provider stream that has produced its first event, with its budget hold."""

    target: Target
    request: CompletionRequest
    first: StreamEvent
    rest: AsyncIterator[StreamEvent]
    attempts: list[Attempt]
    hold: Any = None
    warnings: list[str] = field(default_factory=list)

    @property
    def fallback(self) -> bool:
        """Another model than the one that answered was tried first (a retry of the same
        model after a short Retry-After is not a fallback)."""
        return any(a.target != self.target for a in self.attempts)

    async def events(self) -> AsyncIterator[StreamEvent]:
        """The stream's events. Its end tells the target's circuit breaker how the upstream
        did: a complete stream is a success, a retryable failure mid-stream a failure, a
        client that went away tells nothing."""
        outcome: str | None = None
        try:
            if isinstance(self.first, StreamEnd):
                outcome = "ok"
            yield self.first
            async for event in self.rest:
                if isinstance(event, StreamEnd):
                    outcome = "ok"
                yield event
        except ProviderError as exc:
            outcome = "failed" if is_retryable(exc) else "ok"
            if outcome == "failed":
                breakers.record_failure(
                    self.target.provider, self.target.model, reason=f"mid-stream: {exc}"
                )
            raise
        finally:
            if outcome == "ok":
                breakers.record_success(self.target.provider, self.target.model)
            elif outcome is None:
                breakers.release(self.target.provider, self.target.model)

    async def aclose(self) -> None:
        await _close(self.rest)


def _attempts_text(attempts: list[Attempt]) -> str:
    return "; ".join(
        f"{a.target}: {a.outcome}{' (' + a.error + ')' if a.error else ''}" for a in attempts
    )


def _circuit_text(admission: Admission) -> str:
    if admission.retry_in > 0:
        return f"circuit open for another {admission.retry_in:.1f}s: {admission.reason}"
    return f"circuit half-open: {admission.reason}"


RequestBuilder = Callable[[Target, Plan], CompletionRequest]


async def open_stream(
    *, plan: Plan, build_request: RequestBuilder, metering: Metering | None = None
) -> OpenedStream:
    """Try each target in order until one yields its first event.

    An unavailable provider is skipped; a target whose circuit breaker is open
    (llm/circuit.py) is skipped at once, recorded as a "circuit_open" attempt; a retryable
    failure before the first event moves on to the next target; a terminal failure is
    raised as what it is. Once a stream has produced an event it is never swapped for
    another model.

    Retry-After (429, or a 503 that carries it): up to RHETOR_RETRY_AFTER_MAX_WAIT seconds
    is waited out and the same model is tried once more; a longer one opens that model's
    circuit for the Retry-After (capped at RHETOR_RETRY_AFTER_MAX_HOLD), so no request
    sends it anything before then, and this request falls back at once.

    Every attempt that reaches a provider is reserved first and settled when it fails
    here, or by the caller when its stream ends. When a reservation would cross an
    enforced limit, cheaper models are tried next (budget-aware steering); with nothing
    affordable the first BudgetExceeded (402) is raised.
    """
    meter = metering or NoMetering()
    attempts: list[Attempt] = []
    warnings: list[str] = []
    exceeded: BudgetExceeded | None = None
    queue = list(plan.targets)
    retried: set[Target] = set()
    soonest: float | None = None  # when the first skipped circuit admits a probe again
    index = 0
    while index < len(queue):
        target = queue[index]
        index += 1
        provider = get_provider(target.provider)
        if provider is None or not await provider.is_available():
            attempts.append(Attempt(target, "unavailable", "provider is not configured"))
            continue
        admission = breakers.admit(target.provider, target.model)
        if not admission.allowed:
            attempts.append(Attempt(target, "circuit_open", _circuit_text(admission)))
            wait = max(admission.retry_in, 1.0)
            soonest = wait if soonest is None else min(soonest, wait)
            continue
        request = build_request(target, plan)
        try:
            hold = await meter.reserve(
                target=target,
                request=request,
                attempt=len(attempts),
                lower_max_tokens=plan.route.lower_max_tokens,
            )
        except BudgetExceeded as exc:
            breakers.release(target.provider, target.model)
            attempts.append(Attempt(target, "over_budget", exc.message))
            exceeded = exceeded or exc
            cheaper = [t for t in await meter.alternatives(target=target) if t not in queue]
            queue[index:index] = cheaper
            if cheaper:
                warnings.append(f"{exc.message}; trying cheaper models instead of {target}")
            continue
        granted = meter.granted_max_tokens(hold)
        if granted is not None:
            request = dataclasses.replace(request, max_tokens=granted)
        stream = provider.stream(request)
        try:
            first = await anext(aiter(stream))
        except ProviderError as exc:
            await _close(stream)
            await meter.settle(hold, usage=exc.usage, status="error", error=exc.message)
            attempts.append(Attempt(target, "failed", exc.message, exc.status_code))
            if is_retryable(exc):
                breakers.record_failure(target.provider, target.model, reason=str(exc))
                if await _wait_for_retry_after(exc, target, retried):
                    index -= 1  # the same model once more
                    continue
                logger.warning(
                    "%s failed before its first chunk, trying the next model: %s", target, exc
                )
                continue
            breakers.record_success(target.provider, target.model)  # it answered
            raise ProviderRejected(
                f"{target.provider} rejected the request"
                f"{f' (HTTP {exc.status_code})' if exc.status_code else ''}: {exc.message}",
                provider_status=exc.status_code,
                provider=target.provider,
                model=target.model,
            ) from exc
        except StopAsyncIteration:
            await meter.settle(hold, usage=None, status="error", error="empty stream")
            attempts.append(Attempt(target, "failed", "empty stream"))
            breakers.record_failure(target.provider, target.model, reason="empty stream")
            continue
        except BaseException:  # cancelled while waiting for the first event
            breakers.release(target.provider, target.model)
            await _close(stream)
            await asyncio.shield(finish_soon(meter.settle(hold, usage=None, status="cancelled")))
            raise
        attempts.append(Attempt(target, "ok"))
        if exceeded is not None:
            warnings.append(f"Budget: answered by {target} to stay within the limit")
        return OpenedStream(target, request, first, stream, attempts, hold, warnings)
    if exceeded is not None:
        raise exceeded
    hint = {"retry_after": math.ceil(soonest)} if soonest is not None else {}
    raise ProviderUnavailable(
        NO_PROVIDER_ANSWERED.format(attempts=_attempts_text(attempts) or "no model to try"),
        **hint,  # seconds until a skipped model may be tried again (and a Retry-After header)
        attempts=[
            {
                "provider": a.target.provider,
                "model": a.target.model,
                "outcome": a.outcome,
                "error": a.error,
            }
            for a in attempts
        ],
    )


async def _wait_for_retry_after(exc: ProviderError, target: Target, retried: set[Target]) -> bool:
    """Honour the provider's Retry-After. True when it was short enough to wait out here
    (once per target and request): the caller tries the same model again. A longer one
    opens the target's circuit for that long; False means: fall back now."""
    wait = exc.retry_after
    if wait is None:
        return False
    if wait <= settings.RHETOR_RETRY_AFTER_MAX_WAIT:
        if target in retried:
            return False
        retried.add(target)
        logger.info("%s asked to retry after %.2fs; waiting", target, wait)
        await asyncio.sleep(wait)
        return True
    hold = min(wait, settings.RHETOR_RETRY_AFTER_MAX_HOLD)
    breakers.hold_off(
        target.provider,
        target.model,
        seconds=hold,
        reason=f"the provider asked to retry after {wait:.0f}s (HTTP {exc.status_code})",
    )
    logger.warning("%s asked to retry after %.0fs: skipped for %.0fs", target, wait, hold)
    return False


async def _close(stream: AsyncIterator[StreamEvent]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            logger.debug("closing a failed stream raised", exc_info=True)

"""Steps 4 and 6 for money: every attempt reserves its worst case against the budgets
before the provider is called, and settles to the real usage after it (budget app)."""

import math
import time
import uuid
from dataclasses import dataclass

from asgiref.sync import sync_to_async

from budget.selectors import cheaper_alternatives
from budget.services import Reservation, abudget_reserve, abudget_settle_retrying
from llm.gateway.prepare import Prepared
from llm.providers import all_providers
from llm.providers.base import CompletionRequest, Usage
from llm.routes import SIMULATED, Target
from rhetor_site.db import released
from rhetor_site.tokens import estimate_messages_tokens

acheaper_alternatives = sync_to_async(released(cheaper_alternatives))

# The worst case reserved when neither the route nor the request sets max_tokens.
DEFAULT_MAX_OUTPUT_TOKENS = 4096


def reserved_input_tokens(request: CompletionRequest) -> int:
    """The input tokens held for an attempt: the offline count padded by 10% (+16), so the
    provider's own count, which settle charges, stays within what was reserved."""
    return math.ceil(estimate_messages_tokens(request.messages, request.system) * 1.1) + 16


@dataclass
class _Hold:
    reservation: Reservation
    started: float


class BudgetMeter:
    """The router's Metering for one request: every attempt reserves its worst case
    against the budgets before the call and settles to the real usage after it."""

    def __init__(self, prepared: Prepared) -> None:
        self.prepared = prepared
        self.request_id = uuid.uuid4()

    async def reserve(
        self, *, target: Target, request: CompletionRequest, attempt: int, lower_max_tokens: bool
    ) -> _Hold:
        llm_request = self.prepared.request
        reservation = await abudget_reserve(
            request_id=self.request_id,
            attempt=attempt + 1,
            provider=target.provider,
            model=target.model,
            component=llm_request.resolved_component,
            task_type=llm_request.task_type,
            context_id=llm_request.context_id,
            input_tokens=reserved_input_tokens(request),
            max_tokens=request.max_tokens or DEFAULT_MAX_OUTPUT_TOKENS,
            prompt_version_id=self.prepared.prompt.version_id if self.prepared.prompt else None,
            # A retry of the same model (after a short Retry-After) is not a fallback.
            is_fallback=target != self.prepared.plan.targets[0],
            allow_lower_max_tokens=lower_max_tokens,
        )
        return _Hold(reservation, time.monotonic())

    def granted_max_tokens(self, hold: _Hold) -> int | None:
        return hold.reservation.max_tokens_allowed

    async def settle(
        self, hold: _Hold, *, usage: Usage | None, status: str, error: str = ""
    ) -> int | None:
        # Retried through a database outage, so an attempt that reached the provider keeps
        # its usage record; None when it is still pending (the cost is not known yet).
        record = await abudget_settle_retrying(
            reservation_id=hold.reservation.reservation_id,
            usage=usage,
            status=status,
            latency_ms=int((time.monotonic() - hold.started) * 1000),
            error=error[:2000],
        )
        return int(record.cost_nanos) if record is not None else None

    async def alternatives(self, *, target: Target) -> list[Target]:
        servable: list[tuple[str, str]] = []
        for pid, provider in all_providers().items():
            if pid != SIMULATED and await provider.is_available():
                servable += [(pid, m.id) for m in provider.models()]
        cheaper = await acheaper_alternatives(
            provider=target.provider, model=target.model, candidates=servable
        )
        return [Target(p, m) for p, m in cheaper]

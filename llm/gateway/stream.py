"""Steps 5 to 8 of a request: stream the answer, then settle, store and publish.

The exchange is stored when the stream ends, whether it completed, failed after it began
(StreamInterrupted is raised, never a silent end), or was cancelled by the client (the
partial reply is kept and flagged). Nothing is written per chunk.
"""

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Any

from django.utils import timezone

from contexts.models import Message
from contexts.outbox import Exchange, astore_exchange
from contexts.services import (
    NewMessage,
    acontext_publish,
    context_compact_soon,
)
from contexts.summaries import SUMMARY_MAX_TOKENS
from contexts.windowing import item_cost
from llm.errors import StreamInterrupted
from llm.gateway.acting import Admission
from llm.gateway.fallbacks import OpenedStream
from llm.gateway.metering import BudgetMeter, _Hold
from llm.gateway.prepare import Prepared
from llm.gateway.request import LLMResult
from llm.providers.base import ProviderError, StreamEnd, TextDelta, Usage
from llm.routes import Target
from rhetor_site.lifecycle import finish_soon
from rhetor_site.tokens import count_tokens, estimate_messages_tokens, estimate_tokens

logger = logging.getLogger("llm")


def exchange_messages(
    *, prepared: Prepared, reply: str, target: Target, usage: Usage | None, status: str, error: str
) -> list[NewMessage]:
    """The messages an exchange adds to its conversation: the new turns (the last one
    flagged when it had to be cut to fit), then the reply (flagged when partial)."""
    messages = list(prepared.to_store)
    fitted = prepared.builder.fitted.get(target)
    if fitted and fitted.new_truncated_from is not None and messages:
        last = messages[-1]
        flagged = {**last.metadata, "truncated": True, "original_tokens": fitted.new_truncated_from}
        messages[-1] = replace(last, metadata=flagged)
    if reply or status == "ok":
        metadata: dict[str, Any] = {}
        if status != "ok":
            metadata = {"partial": True, "status": status, "error": error}
        reported = bool(usage and usage.output_tokens and status == "ok")
        output_tokens = usage.output_tokens if usage and reported else count_tokens(reply)
        messages.append(
            NewMessage(
                "assistant",
                reply,
                tokens=output_tokens,
                provider=target.provider,
                model=target.model,
                metadata=metadata,
                token_source="provider" if reported else "estimate",
            )
        )
    return messages


class LLMStream:
    """An opened generation: iterate `chunks()` for text; `result` is set when it ends."""

    def __init__(
        self,
        prepared: Prepared,
        opened: OpenedStream,
        meter: BudgetMeter | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.prepared = prepared
        self.opened = opened
        self.meter = meter
        self.admission = admission
        self.failure_usage: Usage | None = None
        self.result: LLMResult | None = None
        # The exchange could not be stored yet (the database is away): it is kept and
        # stored when the database returns.
        self.exchange_pending = False

    @property
    def provider(self) -> str:
        return self.opened.target.provider

    @property
    def model(self) -> str:
        return self.opened.target.model

    @property
    def fallback(self) -> bool:
        return self.opened.fallback

    @property
    def context_id(self) -> str:
        return self.prepared.request.context_id

    @property
    def warnings(self) -> list[str]:
        return [*self.opened.warnings, *self.reservation_warnings]

    @property
    def reservation_warnings(self) -> list[str]:
        hold = self.opened.hold
        return list(hold.reservation.warnings) if isinstance(hold, _Hold) else []

    async def _settle(self, status: str, usage: Usage | None, reply: str, error: str) -> int | None:
        """Charge the attempt once: the provider's usage when it completed; when the stream
        was cut short (the client went away, or the provider broke it off after it began),
        the prompt plus what was delivered, counted offline and marked `partial` -- the
        provider bills what it generated, and OpenAI-style streams report usage only at
        their end. A provider that reported more than that (Anthropic's message_start and
        deltas) is charged what it reported."""
        if status in ("cancelled", "error"):
            usage = self._cut_short_usage(reply, reported=self.failure_usage)
        meter = self.meter
        if meter is None or self.opened.hold is None:
            return None
        return await meter.settle(self.opened.hold, usage=usage, status=status, error=error)

    def _cut_short_usage(self, reply: str, *, reported: Usage | None) -> Usage:
        request = self.opened.request
        prompt = estimate_messages_tokens(request.messages, request.system)
        delivered = estimate_tokens(reply) if reply else 0
        if reported is None:
            return Usage(input_tokens=prompt, output_tokens=delivered, source="partial")
        return Usage(
            input_tokens=reported.input_tokens or prompt,
            output_tokens=max(reported.output_tokens, delivered),
            source="partial",
        )

    def _compact_later(self) -> None:
        """Archive and summarise what no longer fits the answering model's window, in the
        background (never delaying or failing this request)."""
        fitted = self.prepared.builder.fitted.get(self.opened.target)
        if not self.prepared.request.store or fitted is None:
            return
        keep = fitted.history_budget - item_cost(SUMMARY_MAX_TOKENS)
        if keep > 0:
            context_compact_soon(context_id=self.context_id, keep_tokens=keep)

    async def _finish(self, status: str, usage: Usage | None, reply: str, error: str) -> int | None:
        """Steps 6-8: settle the budget and the rate limit, store and publish the exchange,
        and compact the conversation later. The cost charged (None: still pending)."""
        charged = await self._settle(status, usage, reply, error)
        stored = await self._store(status, usage, reply, error)
        await acontext_publish(context_id=self.context_id, messages=stored)
        self._compact_later()
        if self.admission is not None:
            await self.admission.settle(usage)  # no usage (failed, cancelled): estimate stands
        return charged

    async def _store(
        self, status: str, usage: Usage | None, reply: str, error: str
    ) -> list[Message]:
        """The stored messages of the exchange; when the database is away it is kept and
        stored once it returns (contexts.outbox), and the result says it is pending."""
        if not self.prepared.request.store:  # a stateless request: no thread hop
            return []
        messages = exchange_messages(
            prepared=self.prepared,
            reply=reply,
            target=self.opened.target,
            usage=usage,
            status=status,
            error=error,
        )
        stored = await astore_exchange(
            Exchange(
                context_id=self.context_id,
                component=self.prepared.request.resolved_component,
                messages=tuple(messages),
                request_id=self.meter.request_id if self.meter else uuid.uuid4(),
            )
        )
        if stored is None:
            self.exchange_pending = True
            return []
        return stored

    async def chunks(self) -> AsyncGenerator[str, None]:
        parts: list[str] = []
        end: StreamEnd | None = None
        status, error = "cancelled", "cancelled by the client"
        try:
            async for event in self.opened.events():
                if isinstance(event, TextDelta):
                    if event.text:
                        parts.append(event.text)
                        yield event.text
                elif isinstance(event, StreamEnd):
                    end = event
            if end is None:
                status, error = "error", "the provider's stream ended without its final event"
                raise StreamInterrupted(error, provider=self.provider, model=self.model)
            status, error = "ok", ""
        except ProviderError as exc:
            status, error = "error", exc.message
            self.failure_usage = exc.usage
            raise StreamInterrupted(
                f"{self.provider} failed mid-stream: {exc.message}",
                provider=self.provider,
                model=self.model,
            ) from exc
        finally:
            await self.opened.aclose()
            reply = "".join(parts)
            usage = end.usage if end is not None else None
            # Shielded and waited for by the worker before it exits: a client that went away
            # (or a shutdown) cancels this task, but what was generated is still charged,
            # stored and published.
            charged = await asyncio.shield(finish_soon(self._finish(status, usage, reply, error)))
            if end is not None:
                self.result = LLMResult(
                    text=reply,
                    provider=self.provider,
                    model=end.model or self.model,
                    context_id=self.context_id,
                    usage=end.usage,
                    fallback=self.fallback,
                    finish_reason=end.finish_reason,
                    timestamp=timezone.now(),
                    budget_warnings=tuple(self.warnings),
                    cost_nanos=charged,
                    exchange_pending=self.exchange_pending,
                )

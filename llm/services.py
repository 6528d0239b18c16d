"""The one request path behind /message, /stream, /chat, the WebSocket and /v1.

    prepare (route, plan, system prompt, history)  -- a few bounded queries
    open     (try the plan's models until one streams its first event)
    stream   (no database work per chunk)
    finish   (store the exchange, in one transaction, after the provider is done)

No transaction is held across a provider call: every database step runs in a short sync
function called through sync_to_async.
"""

import asyncio
import logging
import math
import time
import uuid
from collections.abc import AsyncGenerator, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from budget.errors import BudgetExceeded
from budget.live import abudget_publish_exceeded, abudget_publish_warnings
from budget.selectors import cheaper_alternatives
from budget.services import Reservation, abudget_reserve, abudget_settle_retrying
from contexts.models import Message
from contexts.selectors import (
    EMPTY_HISTORY,
    HistoryBundle,
    acontext_window_for,
    context_history_for_request,
)
from contexts.services import (
    NewMessage,
    acontext_publish,
    component_of,
    context_append_messages,
    context_compact_soon,
)
from contexts.summaries import SUMMARY_MAX_TOKENS
from contexts.windowing import fit_with_summary, history_budget, item_cost, truncate_to_tokens
from llm.errors import StreamInterrupted
from llm.models import DefaultModel, TaskRoute
from llm.providers import all_providers, get_provider
from llm.providers.base import (
    ChatMessage,
    CompletionRequest,
    ProviderError,
    StreamEnd,
    TextDelta,
    Usage,
)
from llm.router import (
    SIMULATED,
    OpenedStream,
    Plan,
    Route,
    RouteOptions,
    Target,
    _worker_routes,
    aroute_table,
    open_stream,
    plan_targets,
    route_table_changed,
    seed_routes,
    validate_target,
)
from prompts.selectors import ResolvedPrompt, system_prompt_resolve
from rhetor_site.db import released
from rhetor_site.outages import DATABASE_ERRORS
from rhetor_site.tokens import count_tokens, estimate_messages_tokens, estimate_tokens

logger = logging.getLogger("llm")
acheaper_alternatives = sync_to_async(released(cheaper_alternatives))

DEFAULT_CONTEXT_WINDOW = 8192
# The worst case reserved when neither the route nor the request sets max_tokens.
DEFAULT_MAX_OUTPUT_TOKENS = 4096


@dataclass(frozen=True)
class LLMRequest:
    """A request to the gateway, whatever door it came in by."""

    messages: tuple[ChatMessage, ...]
    context_id: str = "default"
    component: str | None = None
    task_type: str = "default"
    options: RouteOptions = field(default_factory=RouteOptions)
    prompt_id: str | None = None
    prompt_variables: dict[str, Any] | None = None
    # /chat: `messages` is the conversation to send (instead of the stored history).
    whole_conversation: bool = False
    # False for Rhetor's own internal calls (e.g. summaries): nothing is read from or
    # appended to the context.
    store: bool = True

    @property
    def resolved_component(self) -> str:
        """An explicit component wins; else the part of context_id before the colon."""
        return self.component or component_of(self.context_id)


@dataclass(frozen=True)
class LLMResult:
    text: str
    provider: str
    model: str
    context_id: str
    usage: Usage
    fallback: bool
    finish_reason: str | None
    timestamp: datetime
    budget_warnings: tuple[str, ...] = ()
    cost_nanos: int | None = None


@dataclass(frozen=True)
class HistoryItem:
    role: str
    content: str
    tokens: int


def catalogue_window(target: Target) -> int:
    """The provider catalogue's window, for a model the window table was not asked about
    (a budget-steering alternative)."""
    provider = get_provider(target.provider)
    if provider is not None:
        for info in provider.models():
            if info.id == target.model:
                return info.context_window
    return DEFAULT_CONTEXT_WINDOW


def new_messages_to_store(
    stored: list[tuple[str, str]], sent: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The part of a /chat conversation the context does not hold yet: the client may
    resend the whole conversation, or only its tail; the longest overlap of the stored
    tail with the sent head is not stored twice."""
    for k in range(min(len(stored), len(sent)), 0, -1):
        if stored[-k:] == sent[:k]:
            return sent[k:]
    return sent


@dataclass(frozen=True)
class Window:
    """How a request was fitted into one target's context window."""

    history_budget: int
    new_truncated_from: int | None  # the new turn's tokens when it had to be cut


class RequestBuilder:
    """Builds the provider request for each target of a plan: the system prompt, the
    summary of archived turns, the history that fits the target model's context window
    (contexts.windowing), and the new turns — the last one truncated with a visible
    marker if even it alone would not fit."""

    def __init__(
        self,
        *,
        system: str | None,
        history: list[HistoryItem],
        new: tuple[ChatMessage, ...],
        summary: str | None = None,
        summary_tokens: int = 0,
        windows: dict[Target, int] | None = None,
    ) -> None:
        self.system = system
        self.history = history
        self.new = new
        self.summary = summary
        self.summary_tokens = summary_tokens
        self.windows = windows or {}
        self.fitted: dict[Target, Window] = {}
        self.system_tokens = item_cost(count_tokens(system)) if system else 0
        self.new_tokens = [count_tokens(m.content) for m in new]

    def __call__(self, target: Target, plan: Plan) -> CompletionRequest:
        window = self.windows.get(target) or catalogue_window(target)
        new = self.new
        fixed = self.system_tokens + sum(item_cost(t) for t in self.new_tokens)
        budget = history_budget(
            context_window=window, max_tokens=plan.max_tokens, fixed_tokens=fixed
        )
        truncated_from = None
        if budget == 0 and new:
            # The new turn alone does not fit: cut it to what the window leaves for it.
            others = fixed - item_cost(self.new_tokens[-1])
            room = history_budget(
                context_window=window, max_tokens=plan.max_tokens, fixed_tokens=others
            ) - item_cost(0)
            text, cut = truncate_to_tokens(new[-1].content, max(room, 0))
            if cut:
                truncated_from = self.new_tokens[-1]
                new = (*new[:-1], ChatMessage(new[-1].role, text))
        summary, kept = fit_with_summary(
            summary=self.summary,
            summary_tokens=self.summary_tokens,
            items=self.history,
            budget_tokens=budget,
        )
        self.fitted[target] = Window(history_budget=budget, new_truncated_from=truncated_from)
        system_parts = [self.system or ""]
        if summary:
            system_parts.append(f"Summary of the earlier conversation:\n{summary}")
        system = "\n\n".join(p for p in system_parts if p) or None
        return CompletionRequest(
            model=target.model,
            messages=tuple(ChatMessage(i.role, i.content) for i in kept) + new,  # type: ignore[arg-type]
            system=system,
            temperature=plan.temperature,
            max_tokens=plan.max_tokens,
            timeout=settings.RHETOR_PROVIDER_TIMEOUT,
        )


@dataclass
class Prepared:
    request: LLMRequest
    plan: Plan
    builder: RequestBuilder
    to_store: list[NewMessage]
    prompt: ResolvedPrompt | None = None


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

    def __init__(self, prepared: "Prepared") -> None:
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


def _split_system(messages: tuple[ChatMessage, ...]) -> tuple[list[str], tuple[ChatMessage, ...]]:
    system = [m.content for m in messages if m.role == "system"]
    turns = tuple(m for m in messages if m.role != "system")
    return system, turns


@dataclass(frozen=True)
class _Loaded:
    prompt: ResolvedPrompt | None
    bundle: HistoryBundle


def _load_request(*, request: LLMRequest) -> _Loaded:
    """What a request reads from the database, in one step: the system prompt and the
    stored history. One thread hop instead of one per read, and the pooled connection is
    released right after. (The operator's default model comes with the route table.)"""
    prompt = system_prompt_resolve(
        prompt_id=request.prompt_id,
        component=request.resolved_component or None,
        task_type=request.task_type,
        variables=request.prompt_variables,
    )
    bundle = (
        context_history_for_request(context_id=request.context_id)
        if request.store
        else EMPTY_HISTORY
    )
    return _Loaded(prompt=prompt, bundle=bundle)


_aload_request = sync_to_async(released(_load_request))


async def prepare(request: LLMRequest) -> Prepared:
    """Resolve the route and build what will be sent. Raises the request's 4xx errors."""
    table = await aroute_table()
    route = table.lookup(component=request.resolved_component, task_type=request.task_type)
    if request.store or request.prompt_id or request.resolved_component:
        loaded = await _aload_request(request=request)
    else:
        # A stateless request without component or prompt reads nothing: no thread hop.
        loaded = _Loaded(prompt=None, bundle=EMPTY_HISTORY)
    prompt, bundle = loaded.prompt, loaded.bundle
    default_target = table.default_target
    plan = await plan_targets(route=route, options=request.options, default_target=default_target)
    stored = [HistoryItem(m.role, m.content, m.tokens) for m in bundle.messages]
    system_parts: list[str] = [prompt.text] if prompt else []
    summary: str | None = None
    if request.whole_conversation:
        sent: list[tuple[str, str]] = [(m.role, m.content) for m in request.messages]
        fresh = new_messages_to_store([(m.role, m.content) for m in stored], sent)
        conversation_system, turns = _split_system(request.messages)
        system_parts += conversation_system
        # The client's conversation is what is sent: all but its last turn are history.
        history = [HistoryItem(m.role, m.content, count_tokens(m.content)) for m in turns[:-1]]
        new = turns[-1:]
    else:
        fresh = [(m.role, m.content) for m in request.messages]
        system_parts += [i.content for i in stored if i.role == "system"]
        history = [i for i in stored if i.role != "system"]
        new_system, new = _split_system(request.messages)
        system_parts += new_system
        summary = bundle.summary
    to_store = (
        [NewMessage(role, content, tokens=count_tokens(content)) for role, content in fresh]
        if request.store
        else []  # nothing is stored: no tokenizer work for it
    )
    system = "\n\n".join(part for part in system_parts if part) or None
    windows = {
        t: await acontext_window_for(provider=t.provider, model=t.model) for t in plan.targets
    }
    builder = RequestBuilder(
        system=system,
        history=history,
        new=new,
        summary=summary,
        summary_tokens=bundle.summary_tokens,
        windows=windows,
    )
    return Prepared(request=request, plan=plan, builder=builder, to_store=to_store, prompt=prompt)


def _store_exchange(
    *, prepared: Prepared, reply: str, target: Target, usage: Usage | None, status: str, error: str
) -> list[Message]:
    if not prepared.request.store:
        return []
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
    return context_append_messages(
        context_id=prepared.request.context_id,
        component=prepared.request.resolved_component,
        messages=messages,
    )


_astore_exchange = sync_to_async(released(_store_exchange))


class LLMStream:
    """An opened generation: iterate `chunks()` for text; `result` is set when it ends.

    The exchange is stored when the stream ends, whether it completed, failed after it
    began (StreamInterrupted is raised, never a silent end), or was cancelled by the
    client (the partial reply is kept and flagged).
    """

    def __init__(
        self, prepared: Prepared, opened: OpenedStream, meter: BudgetMeter | None = None
    ) -> None:
        self.prepared = prepared
        self.opened = opened
        self.meter = meter
        self.failure_usage: Usage | None = None
        self.result: LLMResult | None = None

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
        """Charge the attempt once: the provider's usage when it completed; when the client
        went away, the prompt plus what was delivered (`partial`); when the provider
        failed mid-stream, what it reported for the attempt (else nothing)."""
        if status == "cancelled":
            usage = Usage(
                input_tokens=estimate_messages_tokens(
                    self.opened.request.messages, self.opened.request.system
                ),
                output_tokens=estimate_tokens(reply),
                source="partial",
            )
        elif status == "error":
            usage = self.failure_usage
        meter = self.meter
        if meter is None or self.opened.hold is None:
            return None
        return await meter.settle(self.opened.hold, usage=usage, status=status, error=error)

    def _compact_later(self) -> None:
        """Archive and summarise what no longer fits the answering model's window, in the
        background (never delaying or failing this request)."""
        fitted = self.prepared.builder.fitted.get(self.opened.target)
        if not self.prepared.request.store or fitted is None:
            return
        keep = fitted.history_budget - item_cost(SUMMARY_MAX_TOKENS)
        if keep > 0:
            context_compact_soon(context_id=self.context_id, keep_tokens=keep)

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
            charged = await asyncio.shield(self._settle(status, usage, reply, error))
            # Shielded: a client disconnect cancels this task, but what was generated is
            # still stored.
            try:
                stored: list[Message] = []
                if self.prepared.request.store:  # a stateless request: no thread hop
                    stored = await asyncio.shield(
                        _astore_exchange(
                            prepared=self.prepared,
                            reply=reply,
                            target=self.opened.target,
                            usage=usage,
                            status=status,
                            error=error,
                        )
                    )
            except DATABASE_ERRORS as exc:
                # The database went away mid-request: the reply was served and its usage is
                # settled (or pending); the turn cannot be added to the context.
                logger.error("the exchange of %r was not stored: %r", self.context_id, exc)
                stored = []
            await acontext_publish(context_id=self.context_id, messages=stored)
            self._compact_later()
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
                )


async def llm_stream_open(request: LLMRequest) -> LLMStream:
    """Prepare a request and open its stream. Everything that can fail before the first
    chunk (bad input, no provider, a terminal upstream error) raises here, so HTTP
    clients get a real status code instead of a broken 200 stream."""
    prepared = await prepare(request)
    meter = BudgetMeter(prepared)
    origin = {
        "context": request.context_id,
        "component": request.resolved_component,
        "task_type": request.task_type,
    }
    try:
        opened = await open_stream(
            plan=prepared.plan, build_request=prepared.builder, metering=meter
        )
    except BudgetExceeded as exc:
        # Operators subscribed to budget events see the refusal as it happens.
        await abudget_publish_exceeded(body=exc.as_body(), origin=origin)
        raise
    stream = LLMStream(prepared, opened, meter)
    await abudget_publish_warnings(
        warnings=stream.warnings, origin=origin, provider=stream.provider, model=stream.model
    )
    return stream


async def llm_complete(request: LLMRequest) -> LLMResult:
    """The non-streaming path: the same stream, collected."""
    stream = await llm_stream_open(request)
    async with aclosing(stream.chunks()) as chunks:
        async for _ in chunks:
            pass
    assert stream.result is not None  # noqa: S101 - chunks() sets it or raises
    return stream.result


def default_model_set(*, provider: str, model: str | None) -> DefaultModel:
    """Persist the default provider/model (validated against the provider's models)."""
    target = validate_target(provider, model)
    with transaction.atomic():
        chosen, _ = DefaultModel.objects.update_or_create(
            pk=DefaultModel.SINGLETON_ID,
            defaults={"provider": target.provider, "model": target.model},
        )
        _routes_changed()  # the route table carries the default model
    return chosen


def default_model_delete() -> None:
    """Forget the operator's default model: the `default` route's own model serves again."""
    with transaction.atomic():
        DefaultModel.objects.all().delete()
        _routes_changed()


# --- Task routes ---------------------------------------------------------------------------
# Every write validates the route against the provider catalogues (TaskRoute.clean) and,
# once committed, tells every worker to reload its route table (llm.router).


def _routes_changed() -> None:
    _worker_routes.invalidate()  # this worker, at once (its own transaction sees the write)
    transaction.on_commit(route_table_changed)  # every worker, once committed


def _temperature(value: Decimal | float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _fallback_list(fallbacks: Iterable[Target]) -> list[dict[str, str]]:
    return [{"provider": t.provider, "model": t.model} for t in fallbacks]


@transaction.atomic
def task_route_create(
    *,
    name: str,
    provider: str,
    model: str,
    temperature: Decimal | float | None = None,
    max_tokens: int | None = None,
    fallbacks: Iterable[Target] = (),
    lower_max_tokens: bool = False,
    description: str = "",
) -> TaskRoute:
    route = TaskRoute(
        name=name,
        provider=provider,
        model=model,
        temperature=_temperature(temperature),
        max_tokens=max_tokens,
        fallbacks=_fallback_list(fallbacks),
        lower_max_tokens=lower_max_tokens,
        description=description,
    )
    route.full_clean()
    route.save()
    _routes_changed()
    return route


@transaction.atomic
def task_route_update(
    *,
    route: TaskRoute,
    provider: str,
    model: str,
    temperature: Decimal | float | None,
    max_tokens: int | None,
    fallbacks: Iterable[Target],
    lower_max_tokens: bool,
    description: str | None = None,
) -> TaskRoute:
    """Change a route's target and options (its name stays: create another route)."""
    route.provider = provider
    route.model = model
    route.temperature = _temperature(temperature)
    route.max_tokens = max_tokens
    route.fallbacks = _fallback_list(fallbacks)
    route.lower_max_tokens = lower_max_tokens
    if description is not None:
        route.description = description
    route.full_clean()
    route.save()
    _routes_changed()
    return route


TASK_ROUTE_DEFAULT_REQUIRED = (
    "The default route cannot be deleted: every request that no other route claims uses it."
)


@transaction.atomic
def task_route_delete(*, route: TaskRoute) -> None:
    if route.name == "default":
        raise ValidationError(TASK_ROUTE_DEFAULT_REQUIRED)
    route.delete()
    _routes_changed()


def _route_row(route: Route, *, instance: TaskRoute | None = None) -> TaskRoute:
    row = instance or TaskRoute(name=route.name)
    row.provider = route.target.provider
    row.model = route.target.model
    row.temperature = _temperature(route.temperature)
    row.max_tokens = route.max_tokens
    row.fallbacks = _fallback_list(route.fallbacks)
    row.lower_max_tokens = route.lower_max_tokens
    return row


def _validated_rows(routes: dict[str, Route], existing: dict[str, TaskRoute]) -> list[TaskRoute]:
    """Rows for every route, or one ValidationError naming every route that is wrong."""
    rows: list[TaskRoute] = []
    problems: list[str] = []
    for name, route in sorted(routes.items()):
        row = _route_row(route, instance=existing.get(name))
        try:
            row.full_clean(validate_unique=False)
        except ValidationError as exc:
            for field_name, messages in exc.message_dict.items():
                problems += [f"route {name!r}, {field_name}: {m}" for m in messages]
        rows.append(row)
    if problems:
        raise ValidationError(problems)
    return rows


@transaction.atomic
def task_routes_seed() -> int:
    """Fill an empty route table from the built-in routes and RHETOR_TASK_CONFIG; a table
    that has rows is left alone (so the operator's edits win over the seed). Idempotent,
    and safe when workers race: a conflicting row is skipped. Returns the rows created."""
    if TaskRoute.objects.exists():
        return 0
    rows = _validated_rows(seed_routes(), {})
    created = TaskRoute.objects.bulk_create(rows, ignore_conflicts=True)
    _routes_changed()
    return len(created)


@dataclass(frozen=True)
class RoutesImported:
    created: list[str]
    updated: list[str]
    deleted: list[str]


@transaction.atomic
def task_routes_import(*, routes: dict[str, Route], replace: bool = False) -> RoutesImported:
    """Load routes (parsed from the seed format): all of them or none. Routes of the same
    name are updated; with `replace`, routes missing from `routes` are deleted (the
    `default` route must then be among them)."""
    if replace and "default" not in routes:
        raise ValidationError(TASK_ROUTE_DEFAULT_REQUIRED)
    existing = {r.name: r for r in TaskRoute.objects.select_for_update()}
    rows = _validated_rows(routes, existing)
    created = [r.name for r in rows if r.pk is None]
    updated = [r.name for r in rows if r.pk is not None]
    deleted = sorted(set(existing) - set(routes)) if replace else []
    if deleted:
        TaskRoute.objects.filter(name__in=deleted).delete()
    for row in rows:
        row.save()
    _routes_changed()
    return RoutesImported(created=created, updated=updated, deleted=deleted)

"""Task routing and fallbacks.

A route names the provider/model for a task type (optionally per component) with its
temperature, max_tokens and fallback chain. `plan_targets` turns a route and the request's
options into the ordered list of models to try; `open_stream` tries them in order and
returns the first stream that produced its first event. Retries and fallbacks live here
and only here (the SDK clients are created with max_retries=0).
"""

import asyncio
import dataclasses
import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError

from budget.errors import BudgetExceeded
from llm.circuit import Admission, breakers
from llm.errors import (
    NO_PROVIDER_ANSWERED,
    UNKNOWN_MODEL,
    UNKNOWN_PROVIDER,
    UNKNOWN_TASK_TYPE,
    ProviderRejected,
    ProviderUnavailable,
    UnknownModel,
    UnknownProvider,
    UnknownTaskType,
)
from llm.providers import PROVIDER_ORDER, get_provider
from llm.providers.base import (
    CompletionRequest,
    ProviderError,
    StreamEnd,
    StreamEvent,
    Usage,
)
from rhetor_site.versioned import VersionedCache

logger = logging.getLogger("llm")

SIMULATED = "simulated"
REAL_PROVIDERS = tuple(p for p in PROVIDER_ORDER if p != SIMULATED)


@dataclass(frozen=True)
class Target:
    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True)
class Route:
    name: str
    target: Target
    temperature: float | None = None
    max_tokens: int | None = None
    fallbacks: tuple[Target, ...] = ()
    # May max_tokens be lowered to what an enforced budget still affords, rather than
    # steering to a cheaper model or refusing? (`options.lower_max_tokens` in the config.)
    lower_max_tokens: bool = False


def _route(name: str, provider: str, model: str, temp: float, max_tokens: int, fb: str) -> Route:
    fb_provider, fb_model = fb.split("/", 1)
    return Route(name, Target(provider, model), temp, max_tokens, (Target(fb_provider, fb_model),))


DEFAULT_ROUTES: dict[str, Route] = {
    r.name: r
    for r in (
        _route("code", "anthropic", "claude-3-opus-20240229", 0.2, 4000, "openai/gpt-4-turbo"),
        _route("planning", "anthropic", "claude-3-sonnet-20240229", 0.7, 4000, "openai/gpt-4o"),
        _route("reasoning", "anthropic", "claude-3-sonnet-20240229", 0.5, 4000, "openai/gpt-4o"),
        _route("chat", "anthropic", "claude-3-haiku-20240307", 0.8, 2000, "openai/gpt-3.5-turbo"),
        _route("default", "anthropic", "claude-3-sonnet-20240229", 0.7, 4000, "openai/gpt-4o"),
    )
}


def _parse_route(name: str, spec: Any) -> Route:
    where = f"task route {name!r}"
    if not isinstance(spec, dict):
        raise ImproperlyConfigured(f"{where}: expected an object, got {type(spec).__name__}")
    provider, model = spec.get("provider"), spec.get("model")
    if provider not in PROVIDER_ORDER:
        raise ImproperlyConfigured(f"{where}: provider must be one of {', '.join(PROVIDER_ORDER)}")
    if not isinstance(model, str) or not model:
        raise ImproperlyConfigured(f"{where}: model must be a non-empty string")
    options = spec.get("options") or {}
    if not isinstance(options, dict):
        raise ImproperlyConfigured(f"{where}: options must be an object")
    temperature = options.get("temperature")
    max_tokens = options.get("max_tokens")
    if temperature is not None and not isinstance(temperature, int | float):
        raise ImproperlyConfigured(f"{where}: options.temperature must be a number")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise ImproperlyConfigured(f"{where}: options.max_tokens must be a positive integer")
    lower_max_tokens = options.get("lower_max_tokens", False)
    if not isinstance(lower_max_tokens, bool):
        raise ImproperlyConfigured(f"{where}: options.lower_max_tokens must be true or false")
    fallbacks: list[Target] = []
    if options.get("fallback_provider") and options.get("fallback_model"):
        fallbacks.append(Target(options["fallback_provider"], options["fallback_model"]))
    for extra in options.get("fallbacks") or []:  # our extension: a longer chain
        fallbacks.append(Target(extra["provider"], extra["model"]))
    for fb in fallbacks:
        if fb.provider not in PROVIDER_ORDER:
            raise ImproperlyConfigured(f"{where}: unknown fallback provider {fb.provider!r}")
    return Route(
        name=name,
        target=Target(provider, model),
        temperature=float(temperature) if temperature is not None else None,
        max_tokens=max_tokens,
        fallbacks=tuple(fallbacks),
        lower_max_tokens=lower_max_tokens,
    )


def parse_task_config(data: Any) -> dict[str, Route]:
    """Routes from the seed's task configuration format (a JSON object of routes)."""
    if not isinstance(data, dict):
        raise ImproperlyConfigured("task configuration must be a JSON object of routes")
    return {str(name): _parse_route(str(name), spec) for name, spec in data.items()}


@dataclass(frozen=True)
class RouteTable:
    routes: dict[str, Route]
    task_types: frozenset[str] = field(default_factory=frozenset)
    # The operator's POST /provider choice (DefaultModel): it serves the `default` route and
    # ends every fallback chain. Loaded with the routes, so a request reads neither.
    default_target: Target | None = None

    def lookup(self, *, component: str | None, task_type: str) -> Route:
        """`<component>_<task_type>`, then `<component>`, then `<task_type>`, then `default`."""
        if task_type not in self.task_types:
            raise UnknownTaskType(
                UNKNOWN_TASK_TYPE.format(
                    task_type=task_type, known=", ".join(sorted(self.task_types))
                ),
                field="task_type",
            )
        names = []
        if component:
            names += [f"{component}_{task_type}", component]
        names += [task_type, "default"]
        for name in names:
            if name in self.routes:
                return self.routes[name]
        raise ImproperlyConfigured("the default task route is missing")  # pragma: no cover


def build_route_table(routes: dict[str, Route], *, with_defaults: bool = True) -> RouteTable:
    """The table of `routes`, over the built-in DEFAULT_ROUTES (`with_defaults`, what the
    seed does) or alone (the database's routes are the whole truth: a deleted route falls
    through the lookup order; only `default` always exists)."""
    task_types = set(DEFAULT_ROUTES) | {"summarize"}
    for name in routes:
        # "ergon_code" adds nothing new; "translation" adds a task type. A component-only
        # route ("ergon") also becomes accepted as a task type, which is harmless.
        task_types.add(name.rsplit("_", 1)[-1] if "_" in name else name)
    if not with_defaults:
        return RouteTable(
            routes={"default": DEFAULT_ROUTES["default"], **routes},
            task_types=frozenset(task_types),
        )
    merged = {**DEFAULT_ROUTES, **routes}
    if "summarize" not in merged:
        # Summaries go to the cheapest route by default; an operator may override it.
        merged["summarize"] = _route(
            "summarize", "anthropic", "claude-3-haiku-20240307", 0.3, 500, "openai/gpt-3.5-turbo"
        )
    return RouteTable(routes=merged, task_types=frozenset(task_types))


@lru_cache(maxsize=4)
def _route_table_for(path: str) -> RouteTable:
    if not path:
        return build_route_table({})
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ImproperlyConfigured(f"RHETOR_TASK_CONFIG: no such file {path!r}") from exc
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"RHETOR_TASK_CONFIG {path!r} is not valid JSON: {exc}") from exc
    return build_route_table(parse_task_config(data))


def seed_routes() -> dict[str, Route]:
    """What an empty route table is seeded with: the built-in routes (and `summarize`),
    overridden and extended by RHETOR_TASK_CONFIG."""
    return dict(_route_table_for(settings.RHETOR_TASK_CONFIG).routes)


# --- The route table of the database, cached per worker ---------------------------------------
#
# Task routes are TaskRoute rows, edited in the admin or with `routes_import`. Each worker
# keeps the table in memory and, at most every RHETOR_ROUTES_RECHECK_SECONDS, compares the
# version it loaded with the shared version in the cache (Redis with REDIS_URL, else the
# process's locmem cache). The `task_route_*` services bump the version when their
# transaction commits, so every worker reloads within that interval (the one that saved at
# once); in steady state a lookup costs no query and, between checks, no cache round trip.

ROUTES_VERSION_KEY = "rhetor:task_routes:version"
# Ollama serves whatever has been pulled: any well-formed name is accepted.
OLLAMA_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*(:[A-Za-z0-9._-]+)?$")
ROUTE_TEMPERATURE_MAX = 2


def model_known(provider_id: str, model: str) -> bool:
    """Is `model` one of the provider's catalogue (for Ollama: a well-formed name)?"""
    provider = get_provider(provider_id)
    if provider is None:
        return False
    if provider.knows_model(model):
        return True
    return provider_id == "ollama" and bool(OLLAMA_MODEL_NAME.match(model))


def _target_error(provider_id: str, model: str) -> str | None:
    if provider_id not in PROVIDER_ORDER:
        return UNKNOWN_PROVIDER.format(provider=provider_id, known=", ".join(PROVIDER_ORDER))
    if not model_known(provider_id, model):
        provider = get_provider(provider_id)
        known = ", ".join(m.id for m in provider.models()) if provider else ""
        return UNKNOWN_MODEL.format(model=model, provider=provider_id, known=known)
    return None


def route_target_errors(*, provider: str, model: str, fallbacks: Any) -> dict[str, list[str]]:
    """What is wrong with a route's provider, model and fallback chain (field -> messages);
    empty when the route may be saved."""
    errors: dict[str, list[str]] = {}
    if provider not in PROVIDER_ORDER:
        errors["provider"] = [_target_error(provider, model) or ""]
    elif (error := _target_error(provider, model)) is not None:
        errors["model"] = [error]
    if not isinstance(fallbacks, list):
        errors["fallbacks"] = ["The fallback chain must be a list of provider/model pairs."]
        return errors
    problems = []
    for i, item in enumerate(fallbacks, start=1):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("provider"), str)
            or not isinstance(item.get("model"), str)
        ):
            problems.append(f"Fallback {i} must name a provider and a model.")
        elif (error := _target_error(item["provider"], item["model"])) is not None:
            problems.append(f"Fallback {i}: {error}")
    if problems:
        errors["fallbacks"] = problems
    return errors


def route_from_row(row: Any) -> Route:
    """The Route of a TaskRoute row."""
    return Route(
        name=row.name,
        target=Target(row.provider, row.model),
        temperature=float(row.temperature) if row.temperature is not None else None,
        max_tokens=row.max_tokens,
        fallbacks=tuple(Target(f["provider"], f["model"]) for f in row.fallbacks),
        lower_max_tokens=row.lower_max_tokens,
    )


def route_to_spec(route: Route) -> dict[str, Any]:
    """One route in the seed's task configuration format (what parse_task_config reads):
    the first fallback as fallback_provider/fallback_model, the rest as `fallbacks`."""
    options: dict[str, Any] = {}
    if route.temperature is not None:
        options["temperature"] = route.temperature
    if route.max_tokens is not None:
        options["max_tokens"] = route.max_tokens
    if route.fallbacks:
        first, *rest = route.fallbacks
        options["fallback_provider"] = first.provider
        options["fallback_model"] = first.model
        if rest:
            options["fallbacks"] = [{"provider": t.provider, "model": t.model} for t in rest]
    if route.lower_max_tokens:
        options["lower_max_tokens"] = True
    spec: dict[str, Any] = {"provider": route.target.provider, "model": route.target.model}
    if options:
        spec["options"] = options
    return spec


def load_route_table() -> RouteTable:
    """The route table from the database (sync; seeds an empty table first)."""
    from llm.models import DefaultModel, TaskRoute
    from llm.services import task_routes_seed

    chosen = DefaultModel.objects.filter(pk=DefaultModel.SINGLETON_ID).first()
    rows = list(TaskRoute.objects.all())
    if not rows:
        try:
            task_routes_seed()
        except ValidationError as exc:
            raise ImproperlyConfigured(
                "cannot seed the task routes from the built-in routes and RHETOR_TASK_CONFIG: "
                + "; ".join(exc.messages)
                + " (name extra models in RHETOR_ANTHROPIC_MODELS / RHETOR_OPENAI_MODELS)"
            ) from exc
        rows = list(TaskRoute.objects.all())
    table = build_route_table({r.name: route_from_row(r) for r in rows}, with_defaults=False)
    if chosen is not None:
        table = dataclasses.replace(table, default_target=Target(chosen.provider, chosen.model))
    return table


class RouteTableCache(VersionedCache[RouteTable]):
    """One worker's copy of the route table (see above)."""

    def __init__(
        self,
        *,
        loader: Callable[[], RouteTable] = load_route_table,
        recheck_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            key=ROUTES_VERSION_KEY,
            loader=loader,
            recheck_setting="RHETOR_ROUTES_RECHECK_SECONDS",
            recheck_seconds=recheck_seconds,
            clock=clock,
        )


_worker_routes = RouteTableCache()


def route_table() -> RouteTable:
    """This worker's route table (sync code: commands, admin, tests)."""
    return _worker_routes.get()


async def aroute_table() -> RouteTable:
    """This worker's route table, for the request path: no query, no await in steady state."""
    return await _worker_routes.aget()


def route_table_changed() -> None:
    """Tell every worker to reload the routes: a new shared version, and this worker's
    copy dropped at once."""
    _worker_routes.changed()


# --- Validation of explicit choices --------------------------------------------------------


def validate_target(provider_id: str, model: str | None) -> Target:
    """An explicit provider (and model) from a client: unknown ones are a 400."""
    provider = get_provider(provider_id)
    if provider is None:
        raise UnknownProvider(
            UNKNOWN_PROVIDER.format(provider=provider_id, known=", ".join(PROVIDER_ORDER)),
            field="provider",
        )
    model = model or provider.default_model()
    if not provider.knows_model(model):
        known = ", ".join(m.id for m in provider.models())
        raise UnknownModel(
            UNKNOWN_MODEL.format(model=model, provider=provider_id, known=known), field="model"
        )
    return Target(provider_id, model)


# --- Planning ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteOptions:
    provider: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    fallback_provider: str | None = None
    fallback_model: str | None = None


@dataclass(frozen=True)
class Plan:
    route: Route
    targets: tuple[Target, ...]
    temperature: float | None
    max_tokens: int | None


async def real_provider_available() -> bool:
    for pid in REAL_PROVIDERS:
        provider = get_provider(pid)
        if provider is not None and await provider.is_available():
            return True
    return False


async def first_available_real_target() -> Target | None:
    for pid in REAL_PROVIDERS:
        provider = get_provider(pid)
        if provider is not None and await provider.is_available():
            return Target(pid, provider.default_model())
    return None


def _dedupe(targets: Iterable[Target]) -> tuple[Target, ...]:
    seen: list[Target] = []
    for target in targets:
        if target not in seen:
            seen.append(target)
    return tuple(seen)


async def plan_targets(
    *, route: Route, options: RouteOptions, default_target: Target | None
) -> Plan:
    """The ordered models to try for a request.

    - Request options override the route's model, temperature, max_tokens and fallback.
    - `default_target` (the operator's POST /provider choice) serves the `default` route.
    - With no real provider available at all, everything is served by the simulated
      provider (that is the default run, not a fallback). With a real provider available,
      the simulated one is never a silent stand-in: it is tried only when asked for.
      The first available real provider's default model ends the chain, so a route whose
      providers are not configured still reaches one that is.
    """
    if options.provider:
        primary = validate_target(options.provider, options.model)
    elif options.model:
        primary = validate_target(route.target.provider, options.model)
    elif route.name == "default" and default_target is not None:
        primary = default_target
    else:
        primary = route.target
    if options.fallback_provider:
        fallbacks: tuple[Target, ...] = (
            validate_target(options.fallback_provider, options.fallback_model),
        )
    else:
        fallbacks = route.fallbacks
    temperature = options.temperature if options.temperature is not None else route.temperature
    max_tokens = options.max_tokens if options.max_tokens is not None else route.max_tokens

    if not await real_provider_available():
        simulated = get_provider(SIMULATED)
        assert simulated is not None  # noqa: S101 - the registry always has it
        model = primary.model if primary.provider == SIMULATED else simulated.default_model()
        return Plan(route, (Target(SIMULATED, model),), temperature, max_tokens)

    chain = [primary, *fallbacks]
    last_resort = default_target or await first_available_real_target()
    if last_resort is not None:
        chain.append(last_resort)
    explicit_simulated = primary.provider == SIMULATED
    chain = [t for t in chain if t.provider != SIMULATED or explicit_simulated]
    return Plan(route, _dedupe(chain), temperature, max_tokens)


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
            await asyncio.shield(meter.settle(hold, usage=None, status="cancelled"))
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

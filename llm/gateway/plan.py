"""Planning: the ordered models to try for a request, from its route and options.

A model named by the client is resolved here, the same way for every door: `provider/model`
names the provider; a bare id is served by the route's provider when it has that model,
else by the provider that has it (a configured one first).
"""

from collections.abc import Iterable
from dataclasses import dataclass

from llm.errors import MODEL_NOT_SERVED, MODEL_REQUIRED, UnknownModel
from llm.gateway.request import RouteOptions
from llm.providers import PROVIDER_ORDER, get_provider
from llm.routes import REAL_PROVIDERS, SIMULATED, Route, Target, validate_target


@dataclass(frozen=True)
class Plan:
    route: Route
    targets: tuple[Target, ...]
    temperature: float | None
    max_tokens: int | None


def resolve_target(provider: str | None, model: str | None, *, prefer: str | None = None) -> Target:
    """The target a client named, on every door alike: an explicit provider (and model,
    else its default); `provider/model`; or a bare model id, served by `prefer` (the
    route's provider) when it has it, else by the provider that has it, a configured one
    first. UnknownProvider / UnknownModel (400; 404 model_not_found on /v1) otherwise."""
    if provider:
        if model and model.startswith(f"{provider}/"):
            model = model[len(provider) + 1 :]
        return validate_target(provider, model)
    if not model:
        raise UnknownModel(MODEL_REQUIRED, field="model")
    head, sep, tail = model.partition("/")
    if sep and head in PROVIDER_ORDER:
        return validate_target(head, tail)
    serving: list[tuple[bool, int, str]] = []
    for index, pid in enumerate(PROVIDER_ORDER):
        found = get_provider(pid)
        if found is not None and found.knows_model(model):
            serving.append((not found.is_configured(), index, pid))
    if not serving:
        raise UnknownModel(MODEL_NOT_SERVED.format(model=model), field="model")
    if prefer is not None and prefer in {pid for _, _, pid in serving}:
        return Target(prefer, model)
    return Target(min(serving)[2], model)


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
    if options.provider or options.model:
        primary = resolve_target(options.provider, options.model, prefer=route.target.provider)
    elif route.name == "default" and default_target is not None:
        primary = default_target
    else:
        primary = route.target
    if options.fallback_provider or options.fallback_model:
        fallbacks: tuple[Target, ...] = (
            resolve_target(options.fallback_provider, options.fallback_model),
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

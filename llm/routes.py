"""Task routes: which provider and model serve a task type (optionally per component),
with temperature, max_tokens and the fallback chain; the seed's JSON format; and the
checks that a provider/model pair exists. Pure: the database-backed table of the running
server is llm/route_table.py.
"""

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from llm.errors import (
    UNKNOWN_MODEL,
    UNKNOWN_PROVIDER,
    UNKNOWN_TASK_TYPE,
    UnknownModel,
    UnknownProvider,
    UnknownTaskType,
)
from llm.providers import PROVIDER_ORDER, get_provider

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


# --- Is a provider/model pair real? -------------------------------------------------------

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

"""Writes of the llm app: the operator's default model and the task routes.

Every write validates the route against the provider catalogues (TaskRoute.clean) and,
once committed, tells every worker to reload its route table (llm/route_table.py).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction

from llm.models import DefaultModel, TaskRoute
from llm.route_table import (
    fallback_list,
    route_temperature,
    routes_changed,
    validated_rows,
)
from llm.routes import Route, Target, validate_target


def default_model_set(*, provider: str, model: str | None) -> DefaultModel:
    """Persist the default provider/model (validated against the provider's models)."""
    target = validate_target(provider, model)
    with transaction.atomic():
        chosen, _ = DefaultModel.objects.update_or_create(
            pk=DefaultModel.SINGLETON_ID,
            defaults={"provider": target.provider, "model": target.model},
        )
        routes_changed()  # the route table carries the default model
    return chosen


def default_model_delete() -> None:
    """Forget the operator's default model: the `default` route's own model serves again."""
    with transaction.atomic():
        DefaultModel.objects.all().delete()
        routes_changed()


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
        temperature=route_temperature(temperature),
        max_tokens=max_tokens,
        fallbacks=fallback_list(fallbacks),
        lower_max_tokens=lower_max_tokens,
        description=description,
    )
    route.full_clean()
    route.save()
    routes_changed()
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
    route.temperature = route_temperature(temperature)
    route.max_tokens = max_tokens
    route.fallbacks = fallback_list(fallbacks)
    route.lower_max_tokens = lower_max_tokens
    if description is not None:
        route.description = description
    route.full_clean()
    route.save()
    routes_changed()
    return route


TASK_ROUTE_DEFAULT_REQUIRED = (
    "The default route cannot be deleted: every request that no other route claims uses it."
)


@transaction.atomic
def task_route_delete(*, route: TaskRoute) -> None:
    if route.name == "default":
        raise ValidationError(TASK_ROUTE_DEFAULT_REQUIRED)
    route.delete()
    routes_changed()


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
    rows = validated_rows(routes, existing)
    created = [r.name for r in rows if r.pk is None]
    updated = [r.name for r in rows if r.pk is not None]
    deleted = sorted(set(existing) - set(routes)) if replace else []
    if deleted:
        TaskRoute.objects.filter(name__in=deleted).delete()
    for row in rows:
        row.save()
    routes_changed()
    return RoutesImported(created=created, updated=updated, deleted=deleted)

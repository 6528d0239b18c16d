"""The task route table of the database, cached per worker.

Task routes are TaskRoute rows, edited in the admin or with `routes_import`. Each worker
keeps the table in memory and, at most every RHETOR_ROUTES_RECHECK_SECONDS, compares the
version it loaded with the shared version in the cache (Redis with REDIS_URL, else the
process's locmem cache). The `task_route_*` services (llm/services.py) call
`routes_changed()`, which bumps the version when their transaction commits, so every
worker reloads within that interval (the one that saved at once); in steady state a
lookup costs no query and, between checks, no cache round trip.
"""

import dataclasses
import time
from collections.abc import Callable, Iterable
from decimal import Decimal

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import transaction

from llm.models import DefaultModel, TaskRoute
from llm.routes import Route, RouteTable, Target, build_route_table, route_from_row, seed_routes
from rhetor_site.versioned import VersionedCache

ROUTES_VERSION_KEY = "rhetor:task_routes:version"


def load_route_table() -> RouteTable:
    """The route table from the database (sync; seeds an empty table first)."""
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


def routes_changed() -> None:
    """Called by every write to the routes (or the default model), inside its transaction."""
    _worker_routes.invalidate()  # this worker, at once (its own transaction sees the write)
    transaction.on_commit(route_table_changed)  # every worker, once committed


# --- Seeding -------------------------------------------------------------------------------


def route_temperature(value: Decimal | float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def fallback_list(fallbacks: Iterable[Target]) -> list[dict[str, str]]:
    return [{"provider": t.provider, "model": t.model} for t in fallbacks]


def _route_row(route: Route, *, instance: TaskRoute | None = None) -> TaskRoute:
    row = instance or TaskRoute(name=route.name)
    row.provider = route.target.provider
    row.model = route.target.model
    row.temperature = route_temperature(route.temperature)
    row.max_tokens = route.max_tokens
    row.fallbacks = fallback_list(route.fallbacks)
    row.lower_max_tokens = route.lower_max_tokens
    return row


def validated_rows(routes: dict[str, Route], existing: dict[str, TaskRoute]) -> list[TaskRoute]:
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
    rows = validated_rows(seed_routes(), {})
    created = TaskRoute.objects.bulk_create(rows, ignore_conflicts=True)
    routes_changed()
    return len(created)

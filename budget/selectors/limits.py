"""Limits and policies in force: the BudgetLimit rows, with the env defaults
(RHETOR_BUDGET_*) standing in for scope "all" of a period that has no row."""

import datetime as dt
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Q

from budget import policies
from budget.models import BudgetLimit, Policy


@dataclass(frozen=True)
class EffectiveLimit:
    """A limit as enforced: a BudgetLimit row, or the env default (`id` None) for scope
    "all" of a period that has no row."""

    id: int | None
    period: str
    scope_kind: str
    scope_value: str
    limit_nanos: int | None
    policy: str
    start_date: dt.date | None = None

    @property
    def scope(self) -> str:
        return "all" if self.scope_kind == "all" else f"{self.scope_kind}:{self.scope_value}"


def env_default_limits() -> dict[str, int | None]:
    """RHETOR_BUDGET_{DAILY,WEEKLY,MONTHLY}_LIMIT as nanos (None when empty)."""
    result: dict[str, int | None] = {}
    for period in policies.PERIODS:
        raw = str(getattr(settings, f"RHETOR_BUDGET_{period.upper()}_LIMIT", "") or "").strip()
        result[period] = policies.nanos_from_usd(raw) if raw else None
    return result


def env_default_policy() -> str:
    policy = str(getattr(settings, "RHETOR_BUDGET_POLICY", "warn") or "warn").strip().lower()
    return policy if policy in policies.POLICIES else Policy.WARN


def limit_from_row(row: BudgetLimit) -> EffectiveLimit:
    return EffectiveLimit(
        id=row.pk,
        period=row.period,
        scope_kind=row.scope_kind,
        scope_value=row.scope_value,
        limit_nanos=row.limit_nanos,
        policy=row.enforcement,
        start_date=row.start_date,
    )


def with_env_defaults(rows: Iterable[BudgetLimit | EffectiveLimit]) -> list[EffectiveLimit]:
    """`rows` as EffectiveLimits, plus the env default of every period without a row for
    scope "all"; sorted by period, scope kind, scope value."""
    limits = [row if isinstance(row, EffectiveLimit) else limit_from_row(row) for row in rows]
    have_all = {lim.period for lim in limits if lim.scope_kind == "all"}
    defaults = env_default_limits()
    policy = env_default_policy()
    for period in policies.PERIODS:
        if period not in have_all:
            limits.append(
                EffectiveLimit(
                    id=None,
                    period=period,
                    scope_kind="all",
                    scope_value="",
                    limit_nanos=defaults[period],
                    policy=policy,
                )
            )
    limits.sort(key=lambda lim: (lim.period, lim.scope_kind, lim.scope_value))
    return limits


def effective_limits_for(*, provider: str, component: str) -> list[EffectiveLimit]:
    """Every limit that applies to a request of `provider` for `component` (one query)."""
    scope = Q(scope_kind="all") | Q(scope_kind="provider", scope_value=provider)
    if component:
        scope |= Q(scope_kind="component", scope_value=component)
    return with_env_defaults(BudgetLimit.objects.filter(scope))


def effective_limit_list() -> list[EffectiveLimit]:
    """Every limit and policy in force, env defaults included."""
    return with_env_defaults(BudgetLimit.objects.all())


def budget_limits_fingerprint() -> tuple[Any, ...]:
    """How many limit rows exist and when one last changed (`updated_at` moves on every
    save; a delete changes the count): one aggregate over a table of a few rows. Reserve
    compares it with its cached limits on every request, so a limit an operator sets or
    lowers on any worker is enforced by every worker from the next request on, without
    waiting for the version recheck. (Prices follow the recheck.)"""
    db = connections[DEFAULT_DB_ALIAS]
    with db.cursor() as cursor:
        cursor.execute(_limits_fingerprint_sql(db.vendor))
        return tuple(cursor.fetchone())


@functools.cache
def _limits_fingerprint_sql(vendor: str) -> str:
    q = connection.ops.quote_name
    # A quoted identifier of our own model.
    return f"SELECT COUNT(*), MAX({q('updated_at')}) FROM {q(BudgetLimit._meta.db_table)}"  # noqa: S608

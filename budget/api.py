"""The budget endpoints of TEKTON_CONTRACT.md ("Budget"). Sync operations: each parses,
calls one selector or service, and shapes the answer."""

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router

from access.auth import BUDGET, listing_components
from access.errors import COMPONENT_FORBIDDEN, Forbidden
from budget import selectors, services
from budget.policies import AmountError, nanos_from_usd, usd
from budget.schemas import (
    BudgetOut,
    ErrorOut,
    LimitIn,
    LimitSetOut,
    ModelTiersOut,
    PolicyIn,
    SettingsOut,
    SummaryFilterIn,
    SummaryOut,
    UsageFilterIn,
    UsageListOut,
)
from rhetor_site.errors import InvalidInput

# GET needs budget:read, every other method budget:admin. A key pinned to components
# (without budget:admin) reads only its components' usage.
router = Router(tags=["budget"], auth=BUDGET)


def _limit_out(lim: selectors.EffectiveLimit) -> dict[str, Any]:
    return {
        "id": lim.id,
        "provider": lim.scope_value if lim.scope_kind == "provider" else "all",
        "component": lim.scope_value if lim.scope_kind == "component" else None,
        "scope": lim.scope,
        "limit_amount": None if lim.limit_nanos is None else usd(lim.limit_nanos),
        "enforcement": lim.policy,
        "start_date": lim.start_date.isoformat() if lim.start_date else None,
    }


def _scope_of(body: LimitIn | PolicyIn) -> tuple[str, str]:
    if body.component is not None:
        if body.provider != "all":
            raise InvalidInput("give either provider or component, not both", field="component")
        return "component", body.component
    if body.provider == "all":
        return "all", ""
    return "provider", body.provider


@router.get("/budget", response={200: BudgetOut}, operation_id="budget_get")
def budget_get(request: HttpRequest) -> dict[str, Any]:
    status = selectors.budget_status()
    out: dict[str, Any] = {"budget_enabled": status.budget_enabled}
    for p in (status.daily, status.weekly, status.monthly):
        out[p.period] = p.as_payload()
    return out


@router.get("/budget/settings", response={200: SettingsOut}, operation_id="budget_settings_get")
def budget_settings_get(request: HttpRequest) -> dict[str, Any]:
    out: dict[str, list[dict[str, Any]]] = {"daily": [], "weekly": [], "monthly": []}
    for lim in selectors.effective_limit_list():
        out[lim.period].append(_limit_out(lim))
    return out


def _set_out(row: Any) -> dict[str, Any]:
    lim = selectors.EffectiveLimit(
        id=row.pk,
        period=row.period,
        scope_kind=row.scope_kind,
        scope_value=row.scope_value,
        limit_nanos=row.limit_nanos,
        policy=row.enforcement,
        start_date=row.start_date,
    )
    return {"success": True, "period": row.period, **_limit_out(lim)}


@router.post(
    "/budget/limit",
    response={200: LimitSetOut, 422: ErrorOut},
    operation_id="budget_limit_set",
)
def budget_limit_set(request: HttpRequest, body: LimitIn) -> dict[str, Any]:
    kind, value = _scope_of(body)
    try:
        nanos = None if body.limit_amount is None else nanos_from_usd(body.limit_amount)
    except AmountError as exc:
        raise InvalidInput(f"limit_amount: {exc}", field="limit_amount") from exc
    row = services.budget_limit_set(
        period=body.period,
        limit_nanos=nanos,
        scope_kind=kind,
        scope_value=value,
        enforcement=body.enforcement,
    )
    return _set_out(row)


@router.post(
    "/budget/policy",
    response={200: LimitSetOut, 422: ErrorOut},
    operation_id="budget_policy_set",
)
def budget_policy_set(request: HttpRequest, body: PolicyIn) -> dict[str, Any]:
    kind, value = _scope_of(body)
    row = services.budget_policy_set(
        period=body.period, policy=body.policy, scope_kind=kind, scope_value=value
    )
    return _set_out(row)


@router.get(
    "/budget/usage", response={200: UsageListOut, 422: ErrorOut}, operation_id="usage_record_list"
)
def usage_record_list(request: HttpRequest, filters: Query[UsageFilterIn]) -> dict[str, Any]:
    allowed = listing_components(request, filters.component, admin_scope="budget:admin")
    queryset = selectors.usage_record_list(
        period=filters.period,
        provider=filters.provider,
        model=filters.model,
        component=filters.component,
        status=filters.status,
    )
    if allowed is not None:
        queryset = queryset.filter(component__in=allowed)
    records = list(queryset[: filters.limit])
    usage = [
        {
            "id": r.pk,
            "timestamp": r.created_at.isoformat().replace("+00:00", "Z"),
            "provider": r.provider,
            "model": r.model,
            "component": r.component,
            "task_type": r.task_type,
            "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens,
            "cost": usd(r.cost_nanos),
            "metadata": {
                "request_id": str(r.request_id),
                "attempt": r.attempt,
                "status": r.status,
                "source": r.source,
                "context_id": r.context_id,
                "latency_ms": r.latency_ms,
                "fallback": r.is_fallback,
                "bypassed": r.bypassed,
                "price_id": r.price_id,
                "price_is_fallback": r.price_is_fallback,
                "prompt_version_id": r.prompt_version_id,
                "error": r.error,
            },
        }
        for r in records
    ]
    return {
        "period": filters.period,
        "provider": filters.provider or "all",
        "count": len(usage),
        "usage": usage,
    }


@router.get(
    "/budget/summary", response={200: SummaryOut, 422: ErrorOut}, operation_id="usage_summary_get"
)
def usage_summary_get(request: HttpRequest, filters: Query[SummaryFilterIn]) -> dict[str, Any]:
    if listing_components(request, None, admin_scope="budget:admin") is not None:
        # The summary spans every component; a pinned key reads its own /budget/usage.
        raise Forbidden(COMPONENT_FORBIDDEN.format(component="*"), scope="budget:admin")
    summary = selectors.usage_summary(period=filters.period, group_by=filters.grouping)
    return {
        "period": summary.period,
        "group_by": summary.group_by,
        "total_cost": usd(summary.totals.cost_nanos),
        "total_input_tokens": summary.totals.input_tokens,
        "total_output_tokens": summary.totals.output_tokens,
        "total_tokens": summary.totals.total_tokens,
        "count": summary.totals.count,
        "groups": {
            key: {
                "cost": usd(g.cost_nanos),
                "input_tokens": g.input_tokens,
                "output_tokens": g.output_tokens,
                "count": g.count,
            }
            for key, g in summary.groups.items()
        },
    }


@router.get("/budget/model-tiers", response={200: ModelTiersOut}, operation_id="model_tiers_get")
def model_tiers_get(request: HttpRequest) -> dict[str, Any]:
    return {
        tier: [
            {
                "provider": e.provider,
                "model": e.model,
                "cost_per_1k_tokens": usd(e.per_1k_nanos),
                "input_cost_per_token": usd(e.input_price),
                "output_cost_per_token": usd(e.output_price),
            }
            for e in entries
        ]
        for tier, entries in selectors.model_tiers().items()
    }

"""Limits and policies: the operator's limit and policy changes, and resets."""

from django.db import transaction
from django.utils import timezone

from budget import policies
from budget.errors import BAD_PERIOD, BAD_POLICY, BAD_SCOPE
from budget.models import BudgetLimit, BudgetReset
from budget.selectors import budget_config_touched, env_default_limits, env_default_policy
from budget.services.counters import counter_keys, counter_reset
from rhetor_site.errors import InvalidInput


def parse_scope(scope: str) -> tuple[str, str]:
    """ "all" | "provider:<id>" | "component:<name>" -> (scope_kind, scope_value)."""
    scope = (scope or "all").strip()
    if scope == "all":
        return "all", ""
    kind, sep, value = scope.partition(":")
    if not sep or kind not in ("provider", "component") or not value.strip():
        raise InvalidInput(BAD_SCOPE.format(scope=scope), field="scope")
    return kind, value.strip()


def _check_period(period: str) -> None:
    if period not in policies.PERIODS:
        raise InvalidInput(BAD_PERIOD.format(period=period), field="period")


def _check_policy(policy: str) -> None:
    if policy not in policies.POLICIES:
        raise InvalidInput(BAD_POLICY.format(policy=policy), field="policy")


@transaction.atomic
def budget_limit_set(
    *,
    period: str,
    limit_nanos: int | None,
    scope_kind: str = "all",
    scope_value: str = "",
    enforcement: str | None = None,
) -> BudgetLimit:
    """Create or change the limit of one period and scope. Without `enforcement`, an
    existing row keeps its policy and a new one gets RHETOR_BUDGET_POLICY."""
    _check_period(period)
    if enforcement is not None:
        _check_policy(enforcement)
    if limit_nanos is not None and limit_nanos < 0:
        raise InvalidInput("limit_amount must not be negative", field="limit_amount")
    row = (
        BudgetLimit.objects.select_for_update()
        .filter(period=period, scope_kind=scope_kind, scope_value=scope_value)
        .first()
    )
    if row is None:
        row = BudgetLimit(
            period=period,
            scope_kind=scope_kind,
            scope_value=scope_value,
            enforcement=enforcement or env_default_policy(),
        )
    elif enforcement is not None:
        row.enforcement = enforcement
    row.limit_nanos = limit_nanos
    row.full_clean()
    row.save()
    budget_config_touched()
    return row


@transaction.atomic
def budget_policy_set(
    *, period: str, policy: str, scope_kind: str = "all", scope_value: str = ""
) -> BudgetLimit:
    """Set the policy of one period and scope. A new row for scope "all" starts from the
    env default limit of the period (RHETOR_BUDGET_<PERIOD>_LIMIT)."""
    _check_period(period)
    _check_policy(policy)
    row = (
        BudgetLimit.objects.select_for_update()
        .filter(period=period, scope_kind=scope_kind, scope_value=scope_value)
        .first()
    )
    if row is None:
        default = env_default_limits()[period] if scope_kind == "all" else None
        row = BudgetLimit(
            period=period, scope_kind=scope_kind, scope_value=scope_value, limit_nanos=default
        )
    row.enforcement = policy
    row.full_clean()
    row.save()
    budget_config_touched()
    return row


@transaction.atomic
def budget_reset(
    *, period: str, scope_kind: str = "all", scope_value: str = "", actor: str = "", note: str = ""
) -> BudgetReset:
    """An operator's reset of the current window of one period and scope: the counter's
    baseline moves up to what was spent, so the window starts again from zero. The usage
    ledger is untouched; the reset is recorded as an audit row."""
    _check_period(period)
    [key] = counter_keys([(period, scope_kind, scope_value)], now=timezone.now())
    baseline_before, after = counter_reset(key)
    budget_config_touched()
    return BudgetReset.objects.create(
        counter=after,
        period=period,
        scope_kind=scope_kind,
        scope_value=scope_value,
        window_start=key[3],
        baseline_before=baseline_before,
        spent_nanos=after.spent_nanos,
        actor=actor,
        note=note,
    )

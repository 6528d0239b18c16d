"""Budget reads (HOUSE_STYLE R2), one module per subject:

- `prices`: the price a model is quoted at (`model_price_get`), tiers, cheaper models.
- `limits`: the limits and policies in force, env defaults included.
- `config`: prices and limits cached per worker, as the request path reads them.
- `status`: usage, holds, limit and policy of the current window of each period.
- `reports`: the usage ledger, its totals and summaries, the dashboards' statistics.

Every public name is re-exported here: import from `budget.selectors`. Patch a name where
it is looked up (e.g. `budget.selectors.config.worker_budget_config`), not here.
"""

from budget.selectors.config import (
    BUDGET_CONFIG_VERSION_KEY,
    BudgetConfig,
    BudgetConfigCache,
    budget_config,
    budget_config_changed,
    budget_config_checked,
    budget_config_drop,
    budget_config_load,
    budget_config_touched,
    worker_budget_config,
)
from budget.selectors.limits import (
    EffectiveLimit,
    budget_limits_fingerprint,
    effective_limit_list,
    effective_limits_for,
    env_default_limits,
    env_default_policy,
)
from budget.selectors.prices import (
    PriceQuote,
    TierEntry,
    cheaper_alternatives,
    model_price_get,
    model_price_list_current,
    model_tiers,
)
from budget.selectors.reports import (
    GROUP_BY_FIELDS,
    ModelStats,
    UsageSummary,
    UsageTotals,
    component_spend_on,
    daily_spend_by,
    day_range,
    local_today,
    percentile,
    usage_breakdown,
    usage_failure_list,
    usage_record_list,
    usage_stats_by_model,
    usage_summary,
    usage_totals,
    window_range,
)
from budget.selectors.status import (
    BudgetStatus,
    PeriodStatus,
    budget_status,
    current_window,
    spend_counter_get,
)

__all__ = [
    "BUDGET_CONFIG_VERSION_KEY",
    "GROUP_BY_FIELDS",
    "BudgetConfig",
    "BudgetConfigCache",
    "BudgetStatus",
    "EffectiveLimit",
    "ModelStats",
    "PeriodStatus",
    "PriceQuote",
    "TierEntry",
    "UsageSummary",
    "UsageTotals",
    "budget_config",
    "budget_config_changed",
    "budget_config_checked",
    "budget_config_drop",
    "budget_config_load",
    "budget_config_touched",
    "budget_limits_fingerprint",
    "budget_status",
    "cheaper_alternatives",
    "component_spend_on",
    "current_window",
    "daily_spend_by",
    "day_range",
    "effective_limit_list",
    "effective_limits_for",
    "env_default_limits",
    "env_default_policy",
    "local_today",
    "model_price_get",
    "model_price_list_current",
    "model_tiers",
    "percentile",
    "spend_counter_get",
    "usage_breakdown",
    "usage_failure_list",
    "usage_record_list",
    "usage_stats_by_model",
    "usage_summary",
    "usage_totals",
    "window_range",
    "worker_budget_config",
]

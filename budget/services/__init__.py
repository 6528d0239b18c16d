"""Budget writes (HOUSE_STYLE R2), one module per subject. A metered request is reserved,
then settled (R10):

- `reserve`: hold a request's worst case against every limit that applies, all or nothing.
- `settle`: release the hold and charge the actual cost, once; release stale holds.
- `outage`: settle through a brief database outage, in the background if need be.
- `counters`: the spend counters, and every SQL statement that moves money on them (the
  race-freedom rules are in its docstring).
- `rows`: the INSERT of a new reservation or usage record.
- `prices`: quoting a request, costing a usage, the operator's price changes.
- `limits`: the operator's limit and policy changes, and resets.
- `usage`: what budget reads of a request's token usage (`TokenUsage`).

Every public name is re-exported here: import from `budget.services`. Patch a name where
it is looked up (e.g. `budget.services.settle.budget_settle`), not here.
"""

from budget import policies
from budget.selectors import budget_config_touched
from budget.services.limits import budget_limit_set, budget_policy_set, budget_reset, parse_scope
from budget.services.outage import abudget_settle_retrying, await_pending_settles, pending_settles
from budget.services.prices import cost_for, model_price_set, model_prices_seed
from budget.services.reserve import Reservation, abudget_reserve, budget_reserve
from budget.services.settle import abudget_settle, budget_settle, reservation_release_stale
from budget.services.usage import TokenUsage

usd = policies.usd

__all__ = [
    "Reservation",
    "TokenUsage",
    "abudget_reserve",
    "abudget_settle",
    "abudget_settle_retrying",
    "await_pending_settles",
    "budget_config_touched",
    "budget_limit_set",
    "budget_policy_set",
    "budget_reserve",
    "budget_reset",
    "budget_settle",
    "cost_for",
    "model_price_set",
    "model_prices_seed",
    "parse_scope",
    "pending_settles",
    "reservation_release_stale",
    "usd",
]

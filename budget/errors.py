"""Budget errors. Messages are module constants so tests can import them."""

from rhetor_site.errors import RhetorError

BUDGET_EXCEEDED = (
    "The {period} budget for {scope_label} does not allow this request: "
    "${spent} spent and ${reserved} held of ${limit}, ${needed} needed"
)
RESERVATION_NOT_FOUND = "Budget reservation {reservation_id} does not exist"

# Raised as rhetor_site.errors.InvalidInput (400) by the budget services.
NO_PRICE = "No price is known for {provider}/{model}, and no other price exists to charge it at"
BAD_STATUS = "status must be one of ok, error, cancelled (got {status!r})"
BAD_PERIOD = "period must be one of daily, weekly, monthly (got {period!r})"
BAD_POLICY = "policy must be one of ignore, warn, enforce (got {policy!r})"
BAD_SCOPE = "scope must be all, provider:<id> or component:<name> (got {scope!r})"
NEGATIVE_TOKENS = "{field} must not be negative (got {value})"
PRICE_IN_USE = (
    "The price of {provider}/{model} from {effective_from} has been charged already; "
    "set a new price with a later start instead"
)


class BudgetExceeded(RhetorError):
    """An enforce-policy limit cannot hold the request's worst-case cost.

    Details (all money as decimal US-dollar strings): period, scope ("all",
    "provider:<id>", "component:<name>"), limit, spent, reserved, needed, provider, model.
    """

    status = 402
    code = "budget_exceeded"


class ReservationNotFound(RhetorError):
    status = 404
    code = "reservation_not_found"

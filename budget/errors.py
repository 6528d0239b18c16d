"""Budget errors. Messages are module constants so tests can import them."""

from rhetor_site.errors import RhetorError

BUDGET_EXCEEDED = (
    "The {period} budget for {scope_label} does not allow this request: "
    "${spent} spent and ${reserved} held of ${limit}, ${needed} needed"
)
RESERVATION_NOT_FOUND = "Budget reservation {reservation_id} does not exist"


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

"""Access errors: 401 without a valid key, 403 for a missing scope or another component's
resource, 429 when a key's rate limit is reached. Messages are module constants so tests
can import them."""

from rhetor_site.errors import RhetorError

KEY_REQUIRED = "A valid API key is required (X-API-Key or Authorization: Bearer)"
KEY_INVALID = "The API key is not valid (unknown, malformed or revoked)"
SCOPE_MISSING = "This API key lacks the {scope!r} scope"
COMPONENT_FORBIDDEN = "This API key may not act as component {component!r}"
CONTEXT_FORBIDDEN = "Context {context_id!r} belongs to another component"
RATE_LIMITED = "Rate limit reached for this API key: {what}; retry in {retry_after} s"


class Unauthorized(RhetorError):
    status = 401
    code = "unauthorized"


class Forbidden(RhetorError):
    status = 403
    code = "forbidden"


class RateLimited(RhetorError):
    """Details: `retry_after` (whole seconds, also sent as the Retry-After header) and
    `limit` ("requests_per_minute" or "tokens_per_minute")."""

    status = 429
    code = "rate_limited"

    @property
    def retry_after(self) -> int:
        return int(self.details.get("retry_after", 1))


class ApiKeyInvalid(RhetorError):
    """Bad input to the key services (unknown scope, empty name)."""

    status = 422
    code = "validation_error"

"""The base of every domain error. Each app defines its errors in `<app>/errors.py` as
subclasses; `rhetor_site.api` maps them once to the contract's error shape
`{"error": str, "code": str, ...details}` with the class's HTTP status."""

from typing import Any

from rhetor_site.redaction import redact, redact_value


class RhetorError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, **details: Any) -> None:
        # Whatever an upstream echoed back, no key leaves in an error (rhetor_site.redaction).
        message, details = redact(message), redact_value(details)
        super().__init__(message)
        self.message = message
        self.details = details

    def as_body(self) -> dict[str, Any]:
        return {"error": self.message, "code": self.code, **self.details}


class NotFound(RhetorError):
    status = 404
    code = "not_found"


class InvalidInput(RhetorError):
    """A field's value is well-typed but not acceptable; `field` names it."""

    status = 422
    code = "validation_error"

"""Domain errors of the llm app, mapped once in rhetor_site.api to the contract's shape."""

from typing import Any

from rhetor_site.errors import InvalidInput, RhetorError

UNKNOWN_PROVIDER = "Unknown provider {provider!r}; known providers: {known}"
UNKNOWN_MODEL = "Unknown model {model!r} for provider {provider!r}; known models: {known}"
MODEL_NOT_SERVED = (
    "Unknown model {model!r}: no provider serves it (name one as '<provider>/<model>'; "
    "GET /providers lists the models)"
)
MODEL_REQUIRED = "A provider or a model is required"
UNKNOWN_TASK_TYPE = "Unknown task_type {task_type!r}; routed task types: {known}"
NO_PROVIDER_ANSWERED = "No provider could answer: {attempts}"


class UnknownProvider(RhetorError):
    status = 400
    code = "unknown_provider"


class UnknownModel(RhetorError):
    status = 400
    code = "unknown_model"


class UnknownTaskType(InvalidInput):
    code = "unknown_task_type"


class ProviderUnavailable(RhetorError):
    """Every model of the route was unavailable or failed with a retryable error."""

    status = 503
    code = "provider_unavailable"


class ProviderRejected(RhetorError):
    """The provider refused the request with a terminal error. A 4xx that is about the
    request itself (400, 404, 413, 422) is the client's to fix and keeps its status;
    an authentication failure (401, 403) is the gateway's configuration: 502."""

    code = "provider_error"

    def __init__(self, message: str, *, provider_status: int | None, **details: Any) -> None:
        super().__init__(message, provider_status=provider_status, **details)
        if provider_status in (400, 404, 413, 422):
            self.status = provider_status
        else:
            self.status = 502
        if provider_status in (401, 403):
            self.code = "provider_auth_failed"


class StreamInterrupted(RhetorError):
    """The provider failed after the stream began (reported in-band, never silently)."""

    status = 502
    code = "stream_interrupted"

"""The one NinjaAPI, mounted at the site root, and the one error shape.

Every error an operation can answer is in the OpenAPI document: the ones it declares
itself (`response={404: ErrorOut}`), and the ones the exception handlers below answer for
any operation, which `document_common_errors` adds to each operation's responses: a bad
key (401), a missing scope (403), the rate limit (429), a body that is not JSON (400) or
too large (413), invalid input (422), the database or Redis down (503). Under /v1 they are
in OpenAI's error shape, which its SDKs read.
"""

import json
import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, RequestDataTooBig
from django.core.exceptions import ValidationError as ModelValidationError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.schema import REF_TEMPLATE, OpenAPISchema
from pydantic import ConfigDict

from access.auth import ALL_SCOPES
from access.errors import KEY_REQUIRED, RateLimited, Unauthorized
from rhetor_site.errors import InvalidInput, NotFound, RhetorError
from rhetor_site.outages import RETRY_AFTER_SECONDS, outage_of
from rhetor_site.parsing import PAYLOAD_TOO_LARGE, BodyParser, PayloadTooLarge

logger = logging.getLogger("rhetor")

OPENAI_PREFIX = "/v1/"


class ErrorOut(Schema):
    """The contract's error shape; details ride along (`fields`, `limit`, `retry_after`)."""

    model_config = ConfigDict(extra="allow")

    error: str
    code: str


class OpenAIErrorDetailOut(Schema):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorOut(Schema):
    """OpenAI's error shape, answered under /v1 (its SDKs read it)."""

    error: OpenAIErrorDetailOut


# What the exception handlers below answer for any operation (see `_common_errors`).
COMMON_ERRORS = {
    400: "The request body is not valid JSON (`invalid_json`)",
    401: "The API key is malformed, unknown or revoked (`unauthorized`)",
    403: "The API key lacks the scope, or acts for another component (`forbidden`)",
    413: "The request body is larger than RHETOR_MAX_BODY_BYTES (`payload_too_large`)",
    422: "A parameter or body field is invalid (`validation_error`, with `fields`)",
    429: "The API key's rate limit is reached (`rate_limited`, Retry-After)",
    503: "The database or Redis is unavailable (`service_unavailable`, Retry-After)",
}
OPENAI_INVALID_REQUEST = "Invalid request: a body that is not JSON, or an invalid parameter"


def _common_errors(path: str, operation: dict[str, Any]) -> dict[int, str]:
    """The statuses the handlers may answer for this operation, with their meaning: every
    operation may meet an outage, one that takes a key may refuse it, one that takes a
    body may find it unreadable, one that takes any input may find it invalid."""
    has_body = "requestBody" in operation
    statuses = {503}
    if operation.get("security"):
        statuses |= {401, 403, 429}
    if has_body:
        statuses |= {400, 413}
    if has_body or operation.get("parameters"):
        statuses.add(422)
    errors = {status: COMMON_ERRORS[status] for status in statuses}
    if path.startswith(OPENAI_PREFIX) and 422 in errors:
        # OpenAI has no 422: invalid input is a 400 invalid_request_error there.
        del errors[422]
        errors.setdefault(400, OPENAI_INVALID_REQUEST)
    return errors


def _add_component(schema: OpenAPISchema, model: type[Schema]) -> dict[str, str]:
    """`model` in the document's components; a reference to it."""
    definition = model.model_json_schema(ref_template=REF_TEMPLATE, mode="serialization")
    schema.schemas.update(definition.pop("$defs", {}))
    schema.schemas[model.__name__] = definition
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


def document_common_errors(schema: OpenAPISchema) -> None:
    """Add the common errors each operation may answer to its documented responses (an
    operation's own declaration of a status wins), and the error shape to every error
    response declared without a body."""
    error_shapes = {
        False: _add_component(schema, ErrorOut),
        True: _add_component(schema, OpenAIErrorOut),
    }
    for path, operations in schema["paths"].items():
        shape = error_shapes[path.startswith(OPENAI_PREFIX)]
        for operation in operations.values():
            responses = operation["responses"]
            for status, description in _common_errors(path, operation).items():
                responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                if int(status) >= 400 and "content" not in response:
                    response["content"] = {"application/json": {"schema": shape}}
            operation["responses"] = dict(sorted(responses.items(), key=lambda r: int(r[0])))


class RhetorAPI(NinjaAPI):
    """ninja's API whose OpenAPI document also lists the errors the handlers below answer."""

    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None
    ) -> OpenAPISchema:
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        document_common_errors(schema)
        return schema


api = RhetorAPI(
    title="Rhetor",
    version="0.2.0",
    description="The LLM gateway of the Tekton multi-AI system.",
    docs_url="/docs",
    urls_namespace="rhetor",
    # Each router declares the scope its operations need (access.auth); an operation that
    # declares nothing needs every scope, so a forgotten declaration fails closed.
    auth=ALL_SCOPES,
    parser=BodyParser(),
)


def _location(loc: list[Any]) -> str:
    # ninja reports ("body", "payload", "field", ...); clients want the field path.
    parts = [str(p) for p in loc if p not in ("body", "payload", "query", "path")]
    return ".".join(parts) or "body"


def _error_response(request: HttpRequest, exc: RhetorError) -> HttpResponse:
    """`exc` in the error shape the path's clients read: OpenAI's under /v1 (its SDKs map
    it to their exceptions), the contract's everywhere else."""
    if request.path.startswith(OPENAI_PREFIX):
        from llm.openai_format import error_answer

        answer = error_answer(exc)
        response = HttpResponse(
            json.dumps(answer.body), status=answer.status, content_type="application/json"
        )
        for name, value in answer.headers.items():
            response[name] = value
        return response
    return api.create_response(request, exc.as_body(), status=exc.status)


@api.exception_handler(RhetorError)
def rhetor_error(request: HttpRequest, exc: RhetorError) -> HttpResponse:
    response = _error_response(request, exc)
    retry_after = exc.details.get("retry_after")
    if exc.status == 503 and isinstance(retry_after, int):  # e.g. every circuit open
        response["Retry-After"] = str(retry_after)
    return response


@api.exception_handler(Unauthorized)
def unauthorized(request: HttpRequest, exc: Unauthorized) -> HttpResponse:
    response = _error_response(request, exc)
    response["WWW-Authenticate"] = 'Bearer realm="rhetor"'
    return response


@api.exception_handler(AuthenticationError)
def unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return unauthorized(request, Unauthorized(KEY_REQUIRED))


@api.exception_handler(RateLimited)
def rate_limited(request: HttpRequest, exc: RateLimited) -> HttpResponse:
    response = _error_response(request, exc)
    response["Retry-After"] = str(exc.retry_after)
    return response


def _invalid_input(request: HttpRequest, problems: list[dict[str, str]]) -> HttpResponse:
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems) or "invalid request"
    return _error_response(request, InvalidInput(f"Invalid request: {summary}", fields=problems))


@api.exception_handler(ValidationError)
def validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    problems = []
    for err in exc.errors:
        field = _location(list(err.get("loc", [])))
        problems.append({"field": field, "message": err.get("msg", "invalid value")})
    return _invalid_input(request, problems)


@api.exception_handler(ModelValidationError)
def model_validation_error(request: HttpRequest, exc: ModelValidationError) -> HttpResponse:
    """A service's full_clean() refused what the request asked for (an amount beyond the
    column's range, say): the input is invalid, not the server."""
    if not hasattr(exc, "error_dict"):
        return _invalid_input(request, [{"field": "body", "message": m} for m in exc.messages])
    problems = [
        {"field": "body" if field == NON_FIELD_ERRORS else field, "message": message}
        for field, messages in exc.message_dict.items()
        for message in messages
    ]
    return _invalid_input(request, problems)


@api.exception_handler(Http404)
def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error_response(request, NotFound(str(exc) or "Not found"))


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc.__cause__, RhetorError):
        # ninja wraps whatever the body parser raised in a 400 "Cannot parse request body";
        # the parser's own error (rhetor_site.parsing: not JSON, a NUL) says what was wrong.
        return _error_response(request, exc.__cause__)
    return api.create_response(
        request, {"error": str(exc), "code": f"http_{exc.status_code}"}, status=exc.status_code
    )


@api.exception_handler(RequestDataTooBig)
def payload_too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    too_large = PayloadTooLarge(PAYLOAD_TOO_LARGE.format(limit=limit), limit=limit)
    return _error_response(request, too_large)


@api.exception_handler(Exception)
def unexpected_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    outage = outage_of(exc)  # the database or Redis is down: 503, not a 500
    if outage is not None:
        logger.warning("%s on %s %s: %r", outage.message, request.method, request.path, exc)
        response = _error_response(request, outage)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    logger.exception("Unhandled error on %s %s", request.method, request.path)
    body: dict[str, Any] = {"error": "Internal server error", "code": "internal_error"}
    if request.path.startswith(OPENAI_PREFIX):
        from llm.openai_format import internal_error_body

        body = internal_error_body()
    return api.create_response(request, body, status=500)


def _add_routers() -> None:
    # Each app exposes `router`; imported here so the apps stay independent of each other.
    from budget.api import router as budget_router
    from contexts.api import router as contexts_router
    from llm.api import router as llm_router
    from llm.openai_api import router as openai_router
    from prompts.api import router as prompts_router

    api.add_router("", llm_router)
    api.add_router("", prompts_router)
    api.add_router("", budget_router)
    api.add_router("", contexts_router)
    api.add_router("/v1", openai_router)


_add_routers()

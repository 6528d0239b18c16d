"""The one NinjaAPI, mounted at the site root, and the one error shape (OpenAI's under
/v1, which its SDKs read)."""

import json
import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, RequestDataTooBig
from django.core.exceptions import ValidationError as ModelValidationError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from access.auth import ALL_SCOPES
from access.errors import KEY_REQUIRED, RateLimited, Unauthorized
from rhetor_site.errors import InvalidInput, NotFound, RhetorError
from rhetor_site.outages import RETRY_AFTER_SECONDS, outage_of
from rhetor_site.parsing import PAYLOAD_TOO_LARGE, BodyParser, PayloadTooLarge

logger = logging.getLogger("rhetor")

OPENAI_PREFIX = "/v1/"


api = NinjaAPI(
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

"""One error shape for every API answer, including the ones Django and django-ninja make
before an operation runs (an unknown path: 404, a method the path does not serve: 405, a
bad Host header: 400), which are plain text or HTML by default. Clients read
`{"error", "code"}` (TEKTON_CONTRACT.md, Conventions), OpenAI's SDKs under /v1 read
`{"error": {"message", "type", "param", "code"}}`; the admin console and static files keep
Django's own pages."""

import http
import json
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware

NOT_API = ("/admin/", "/admin", "/static/", "/docs")


def _jsonified(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    if (
        response.status_code < 400
        or response.streaming
        or request.path.startswith(NOT_API)
        or response.get("Content-Type", "").startswith("application/json")
    ):
        return response
    status = response.status_code
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    body: dict[str, object] = {"error": reason, "code": f"http_{status}"}
    if status == 404:
        body = {"error": f"No endpoint at {request.path}", "code": "not_found"}
    elif status == 405:
        allowed = response.get("Allow", "")
        body = {
            "error": f"{request.method} is not allowed on {request.path}; allowed: {allowed}",
            "code": "method_not_allowed",
        }
    if request.path.startswith("/v1/"):
        # The OpenAI-compatible endpoints answer in OpenAI's error shape (its SDKs read it).
        body = {
            "error": {
                "message": body["error"],
                "type": "invalid_request_error",
                "param": None,
                "code": body["code"],
            }
        }
    replacement = HttpResponse(
        json.dumps(body), status=status, content_type="application/json; charset=utf-8"
    )
    for header in ("Allow", "Retry-After", "WWW-Authenticate"):
        if header in response:
            replacement[header] = response[header]
    return replacement


@sync_and_async_middleware
def json_errors(
    get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]],
) -> Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]:
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            response = await get_response(request)
            return _jsonified(request, response)

    else:

        def middleware(request: HttpRequest) -> HttpResponse:  # type: ignore[misc]
            return _jsonified(request, get_response(request))  # type: ignore[arg-type]

    return middleware

"""One error shape for every API answer, including the ones Django and django-ninja make
before an operation runs (an unknown path: 404, a method the path does not serve: 405, a
bad Host header: 400), which are plain text or HTML by default. Clients read
`{"error", "code"}` (TEKTON_CONTRACT.md, Conventions), OpenAI's SDKs under /v1 read
`{"error": {"message", "type", "param", "code"}}`; the admin console and static files keep
Django's own pages."""

import http
import json
from collections.abc import Awaitable, Callable
from typing import Any, cast

from asgiref.sync import iscoroutinefunction
from django.contrib.auth.middleware import AuthenticationMiddleware as DjangoAuthentication
from django.contrib.messages.middleware import MessageMiddleware as DjangoMessages
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessions
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.middleware.common import CommonMiddleware as DjangoCommon
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


# --- Django's middleware, without its thread hops on the API ---------------------------------
#
# Under ASGI, every `MiddlewareMixin` middleware runs `process_request` and
# `process_response` through `sync_to_async`: two thread hops per middleware per request,
# about 1.2 ms of CPU for Django's default stack on a request that needs none of it (see
# the README's gateway benchmark). Sessions, authentication and messages serve only the
# operator console, so outside it they are skipped; CommonMiddleware's hooks never block,
# so they run on the event loop. SecurityMiddleware, CsrfViewMiddleware and
# XFrameOptionsMiddleware stay Django's own classes: `check --deploy` looks for them by
# their exact paths and would otherwise stop checking HSTS, SSL redirects and cookies.

CONSOLE = ("/admin/", "/admin")


def in_console(request: HttpRequest) -> bool:
    """Is this a request for the operator console (the Django admin)?"""
    return request.path_info.startswith(CONSOLE)


class ConsoleOnly:
    """Mixin for a Django middleware that serves only the operator console: other paths go
    straight on, without its hooks and without a thread hop."""

    get_response: Any
    async_mode: bool

    def __call__(self, request: HttpRequest) -> Any:
        if not in_console(request):
            return self.get_response(request)
        return super().__call__(request)  # type: ignore[misc]

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if not in_console(request):
            return await self.get_response(request)  # type: ignore[no-any-return]
        return await super().__acall__(request)  # type: ignore[misc,no-any-return]


class SessionMiddleware(ConsoleOnly, DjangoSessions):
    """Django's sessions, for the console only (admin.E410 accepts the subclass)."""


class AuthenticationMiddleware(ConsoleOnly, DjangoAuthentication):
    """Django's `request.user`, for the console only (admin.E408 accepts the subclass)."""


class MessageMiddleware(ConsoleOnly, DjangoMessages):
    """Django's messages framework, for the console only (admin.E409)."""


class CommonMiddleware(DjangoCommon):
    """Django's CommonMiddleware (APPEND_SLASH, Content-Length, DISALLOWED_USER_AGENTS) on
    every path, its hooks called on the event loop: they only look at the request and the
    URL patterns, never block, so they need no thread."""

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        redirect = self.process_request(request)
        response: HttpResponseBase
        if redirect is not None:
            response = redirect
        else:
            response = await cast(Awaitable[HttpResponseBase], self.get_response(request))
        return self.process_response(request, response)

"""Who is calling, and may they do this: the API-key authenticator, scopes, component
pinning and the per-key rate limit, for REST (ninja) and the WebSocket.

Declaring what an operation needs is one line: the app's router gets a default
(`Router(auth=PROMPTS)`, which picks `prompts:read` for GET and `prompts:write` for
other methods) and an operation may override it (`@router.post(..., auth=BUDGET_ADMIN)`,
`auth=PUBLIC` for an open one). An operation that declares nothing inherits the NinjaAPI's
global `ALL_SCOPES`, so a forgotten declaration fails closed.

Anonymous access: when auth is not required (Rhetor listens on loopback, the default
run, and RHETOR_REQUIRE_AUTH is not true), a request without a key is the anonymous
principal, which has every scope, no component pinning and no rate limit. A request
that does present a key is always checked, so a bad key is a 401 even on loopback.

Cost per request: the key is looked up by its id (one indexed query) and kept in a
per-process cache for RHETOR_API_KEY_CACHE_SECONDS (default 5 s), so a revocation takes
effect everywhere within that time (at once in the process that revoked it). The
secret's SHA-256 is compared in constant time on every request. `last_used_at` is
written at most once a minute per key. The rate limiter is one Redis round trip.
"""

import datetime as dt
import hmac
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone
from ninja.security import APIKeyHeader

from access.errors import (
    COMPONENT_FORBIDDEN,
    CONTEXT_FORBIDDEN,
    KEY_INVALID,
    KEY_REQUIRED,
    RATE_LIMITED,
    SCOPE_MISSING,
    Forbidden,
    RateLimited,
    Unauthorized,
)
from access.keycache import cache_key, cached_key
from access.models import SCOPES
from access.ratelimit import TokenCharge, rate_limiter
from access.services import api_key_touch, secret_hash
from contexts.services import component_of

logger = logging.getLogger("rhetor")


class _ActingRequest(Protocol):
    """What acting_request reads of a request (llm.services.LLMRequest has it)."""

    @property
    def component(self) -> str | None: ...

    @property
    def context_id(self) -> str: ...


RequestT = TypeVar("RequestT", bound=_ActingRequest)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "[::1]", "localhost"})
TOKEN_RE = re.compile(r"^rk_([0-9a-f]{8})_([A-Za-z0-9_-]{16,128})$")
TOUCH_EVERY = dt.timedelta(minutes=1)
# Tokens of a request estimated from its size before it runs (4 bytes a token, a common
# rule for English text and JSON; over-estimates the prompt by the JSON around it).
BYTES_PER_TOKEN = 4


@dataclass(frozen=True)
class Principal:
    """The caller: an API key, or the anonymous loopback user."""

    key_id: str  # "" for anonymous
    name: str
    scopes: frozenset[str]
    components: tuple[str, ...] = ()
    requests_per_minute: int = 0  # 0: unlimited
    tokens_per_minute: int = 0
    pk: int | None = None

    @property
    def is_anonymous(self) -> bool:
        return not self.key_id

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


ANONYMOUS = Principal(key_id="", name="anonymous", scopes=frozenset(SCOPES))


def listens_on_loopback(host: str | None = None) -> bool:
    host = (host if host is not None else settings.RHETOR_HOST).strip().lower()
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def auth_required() -> bool:
    """RHETOR_REQUIRE_AUTH when set; else required unless Rhetor listens on loopback."""
    return auth_required_for(settings.RHETOR_HOST)


def auth_required_for(host: str) -> bool:
    forced = getattr(settings, "RHETOR_REQUIRE_AUTH", None)
    return bool(forced) if forced is not None else not listens_on_loopback(host)


def access_notice(host: str) -> str:
    """The startup log line that says who may call a server listening on `host`."""
    if auth_required_for(host):
        return (
            "API keys required: every request except GET / and GET /health needs a valid "
            "key (X-API-Key or Authorization: Bearer); make one with manage.py create_api_key."
        )
    why = (
        "RHETOR_REQUIRE_AUTH=false"
        if getattr(settings, "RHETOR_REQUIRE_AUTH", None) is False
        else "listening on loopback only"
    )
    return (
        f"ANONYMOUS ACCESS: requests without an API key get every scope ({why}). "
        "Set RHETOR_REQUIRE_AUTH=true to require keys."
    )


def insecure_secret_key() -> bool:
    """The built-in development SECRET_KEY is in use."""
    return str(settings.SECRET_KEY).startswith("rhetor-insecure-")


# --- keys ---------------------------------------------------------------------------------


@dataclass
class _Cached:
    secret_hash: str
    principal: Principal | None  # None: revoked
    last_used_at: dt.datetime | None
    expires: float


def _load(key_id: str) -> _Cached | None:
    from access.selectors import api_key_by_id

    key = api_key_by_id(key_id=key_id)
    if key is None:
        return None
    principal = None
    if key.revoked_at is None:
        rpm = key.requests_per_minute
        tpm = key.tokens_per_minute
        principal = Principal(
            key_id=key.key_id,
            name=key.name,
            scopes=frozenset(key.scopes or ()),
            components=tuple(key.components or ()),
            requests_per_minute=settings.RHETOR_RATE_LIMIT_RPM if rpm is None else rpm,
            tokens_per_minute=settings.RHETOR_RATE_LIMIT_TPM if tpm is None else tpm,
            pk=key.pk,
        )
    ttl = float(settings.RHETOR_API_KEY_CACHE_SECONDS)
    return _Cached(key.secret_hash, principal, key.last_used_at, time.monotonic() + ttl)


def principal_for_token(token: str) -> Principal:
    """The key's principal; Unauthorized for a malformed, unknown, wrong or revoked key."""
    match = TOKEN_RE.match(token.strip())
    if not match:
        raise Unauthorized(KEY_INVALID)
    key_id, secret = match.groups()
    entry: _Cached | None = cached_key(key_id)
    if entry is None or entry.expires < time.monotonic():
        entry = _load(key_id)
        if entry is None:
            raise Unauthorized(KEY_INVALID)
        cache_key(key_id, entry)
    if not hmac.compare_digest(entry.secret_hash, secret_hash(secret)):
        raise Unauthorized(KEY_INVALID)
    principal = entry.principal
    if principal is None:
        raise Unauthorized(KEY_INVALID)
    now = timezone.now()
    if entry.last_used_at is None or now - entry.last_used_at >= TOUCH_EVERY:
        entry.last_used_at = now
        api_key_touch(pk=principal.pk or 0, at=now, older_than=TOUCH_EVERY)
    return principal


def token_from_headers(headers: Any) -> str | None:
    """X-API-Key, else Authorization: Bearer (what the Anthropic and OpenAI SDKs send)."""
    key = headers.get("X-API-Key") or headers.get("x-api-key")
    if key:
        return str(key).strip()
    authorization = headers.get("Authorization") or headers.get("authorization") or ""
    scheme, _, value = str(authorization).partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def ws_token(scope: Mapping[str, Any]) -> str | None:
    """A WebSocket handshake's key: the headers, else `?api_key=` (browsers cannot set
    headers on a WebSocket). daphne logs WebSocket paths without the query string."""
    headers = {
        name.decode("latin1").lower(): value.decode("latin1")
        for name, value in scope.get("headers", [])
    }
    token = token_from_headers(headers)
    if token:
        return token
    query = parse_qs(scope.get("query_string", b"").decode("latin1"))
    values = query.get("api_key") or []
    return values[0].strip() if values and values[0].strip() else None


def principal_for(token: str | None) -> Principal:
    """The caller. A Rhetor key (`rk_...`) is always verified. When auth is not required,
    no key, or a key that is not a Rhetor key (the OpenAI and Anthropic SDKs insist on
    sending one, e.g. "sk-local"), is the anonymous principal."""
    if token and (token.startswith("rk_") or auth_required()):
        return principal_for_token(token)
    if auth_required():
        raise Unauthorized(KEY_REQUIRED)
    return ANONYMOUS


# --- scopes and components ----------------------------------------------------------------


def require_scope(principal: Principal, *scopes: str, any_of: bool = False) -> None:
    """All of `scopes` (or one of them, with any_of); Forbidden names what is missing."""
    if not scopes:
        return
    have = [s for s in scopes if principal.has_scope(s)]
    if (any_of and have) or (not any_of and len(have) == len(scopes)):
        return
    missing = scopes[0] if any_of else next(s for s in scopes if s not in have)
    shown = " or ".join(scopes) if any_of else missing
    raise Forbidden(SCOPE_MISSING.format(scope=shown), scope=missing)


def _stored_owner(context_id: str) -> str | None:
    from contexts.models import Context

    return Context.objects.filter(context_id=context_id).values_list("component", flat=True).first()


def context_check(principal: Principal, context_id: str, *, owner: str | None = None) -> None:
    """A pinned key may use only its components' contexts: `<component>:<name>` ids of
    its components, and unprefixed ids that do not exist yet or that a request of its
    components created. `owner` is the stored component when the caller has the row."""
    if not principal.components:
        return
    prefix = component_of(context_id)
    if prefix:
        if prefix not in principal.components:
            raise Forbidden(CONTEXT_FORBIDDEN.format(context_id=context_id), context=context_id)
        if owner is None:
            return
    stored = owner if owner is not None else _stored_owner(context_id)
    if stored is not None and stored not in principal.components:
        raise Forbidden(CONTEXT_FORBIDDEN.format(context_id=context_id), context=context_id)


def component_for(principal: Principal, *, component: str | None, context_id: str) -> str | None:
    """The component a messaging request acts as. A pinned key may name only its own
    components and contexts; when it names none, the context's prefix (if its own) or
    the key's first component is used. Unpinned keys pass the request's choice through."""
    if not principal.components:
        return component
    if component is not None and component not in principal.components:
        raise Forbidden(COMPONENT_FORBIDDEN.format(component=component), component=component)
    context_check(principal, context_id)
    return component or component_of(context_id) or principal.components[0]


def components_allowed(principal: Principal, requested: str | None) -> list[str] | None:
    """For listings filtered by component: None means no restriction; else the components
    the listing may show (Forbidden when a pinned key asks for another one)."""
    if not principal.components:
        return None
    if requested is not None:
        if requested not in principal.components:
            raise Forbidden(COMPONENT_FORBIDDEN.format(component=requested), component=requested)
        return [requested]
    return list(principal.components)


def acting_request(principal: Principal, request: RequestT) -> RequestT:
    """A messaging request (any frozen dataclass with `component` and `context_id`, e.g.
    llm.services.LLMRequest) as the principal may make it: Forbidden for another
    component's context or name, else with the component a pinned key acts as."""
    component = component_for(principal, component=request.component, context_id=request.context_id)
    if component == request.component:
        return request
    return replace(request, component=component)  # type: ignore[type-var]  # a dataclass


async def aacting_request(principal: Principal, request: RequestT) -> RequestT:
    if not principal.components:  # the common case needs no thread hop
        return request
    return await sync_to_async(acting_request)(principal, request)


def context_guard(request: HttpRequest, context_id: str) -> None:
    """For the context endpoints: a pinned key without `contexts:admin` reaches only its
    components' contexts (403 otherwise)."""
    principal = request_principal(request)
    if principal.components and not principal.has_scope("contexts:admin"):
        context_check(principal, context_id)


async def acontext_guard(request: HttpRequest, context_id: str) -> None:
    principal = request_principal(request)
    if principal.components and not principal.has_scope("contexts:admin"):
        await sync_to_async(context_check)(principal, context_id)


def listing_components(
    request: HttpRequest, requested: str | None, *, admin_scope: str
) -> list[str] | None:
    """The components a listing may show: None for no restriction (unpinned keys, or
    keys with `admin_scope`); 403 when a pinned key asks for another component."""
    principal = request_principal(request)
    if principal.has_scope(admin_scope):
        return None
    return components_allowed(principal, requested)


# --- rate limits --------------------------------------------------------------------------


def estimate_tokens_of(size_bytes: int) -> int:
    return math.ceil(size_bytes / BYTES_PER_TOKEN)


def rate_limit_hit(principal: Principal, *, tokens: int = 0) -> TokenCharge | None:
    """Count one request (and its estimated tokens) against the key's limits; RateLimited
    when over. The anonymous principal and keys without limits are not counted."""
    if principal.is_anonymous:
        return None
    rpm = principal.requests_per_minute
    # Tokens are checked (and charged) only for requests that spend them.
    tpm = principal.tokens_per_minute if tokens > 0 else 0
    if rpm <= 0 and tpm <= 0:
        return None
    decision = rate_limiter().hit(subject=principal.key_id, rpm=rpm, tpm=tpm, tokens=tokens)
    if not decision.allowed:
        what = (
            f"{rpm} requests per minute"
            if decision.limit == "requests_per_minute"
            else f"{tpm} tokens per minute"
        )
        raise RateLimited(
            RATE_LIMITED.format(what=what, retry_after=decision.retry_after),
            limit=decision.limit,
            retry_after=decision.retry_after,
        )
    return decision.charge


def tokens_settle(charge: TokenCharge | None, actual_tokens: int | None) -> None:
    """Replace a request's estimated tokens by the real count (provider-reported input +
    output). Without a real count (the request failed before the provider reported
    usage, or the client went away) the estimate stands."""
    if charge is None or actual_tokens is None:
        return
    try:
        rate_limiter().settle(charge, actual_tokens)
    except Exception:  # the request is already served; a lost correction is only logged
        logger.warning("could not settle the token rate limit of rk_%s", charge.subject)


atokens_settle = sync_to_async(tokens_settle, thread_sensitive=False)


async def settle_after(
    content: AsyncIterator[bytes], charge: TokenCharge | None, actual: Callable[[], int | None]
) -> AsyncIterator[bytes]:
    """Pass a streamed body through, then settle the charge with `actual()`."""
    try:
        async for part in content:
            yield part
    finally:
        await atokens_settle(charge, actual())


def usage_tokens(usage: Any) -> int | None:
    """input + output tokens of a provider Usage (None when there is none)."""
    if usage is None:
        return None
    return int(usage.input_tokens or 0) + int(usage.output_tokens or 0)


StreamingT = TypeVar("StreamingT", bound=StreamingHttpResponse)


def metered_stream_response(request: HttpRequest, response: StreamingT, stream: Any) -> StreamingT:
    """An SSE response whose request's token charge is settled when the stream ends, with
    the usage of `stream.result` (llm.services.LLMStream). The response streams from an
    async generator (both SSE endpoints build it from one)."""
    charge = request_charge(request)
    if charge is not None:
        response.streaming_content = settle_after(
            cast("AsyncIterator[bytes]", response.streaming_content),
            charge,
            lambda: usage_tokens(stream.result.usage) if stream.result is not None else None,
        )
    return response


def request_charge(request: HttpRequest) -> TokenCharge | None:
    return getattr(request, "rhetor_token_charge", None)


def request_principal(request: HttpRequest) -> Principal:
    """The principal ninja authenticated (anonymous when the operation is public)."""
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, Principal) else ANONYMOUS


# --- ninja --------------------------------------------------------------------------------

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ApiKeyAuth(APIKeyHeader):
    """ninja authenticator: finds the principal, checks the scope(s), counts the request
    against the key's rate limit (with the body's estimated tokens when `meter_tokens`),
    and returns the principal (ninja sets it as `request.auth`)."""

    param_name = "X-API-Key"

    def __init__(
        self,
        *scopes: str,
        any_of: bool = False,
        write: tuple[str, ...] | None = None,
        meter_tokens: bool = False,
    ) -> None:
        unknown = (set(scopes) | set(write or ())) - set(SCOPES)
        if unknown:
            raise ValueError(f"unknown scope(s): {sorted(unknown)}")
        self.scopes = tuple(scopes)
        self.write_scopes = write
        self.any_of = any_of
        self.meter_tokens = meter_tokens
        super().__init__()

    def _get_key(self, request: HttpRequest) -> str | None:
        return token_from_headers(request.headers)

    def scopes_for(self, method: str) -> tuple[str, ...]:
        if self.write_scopes is not None and method.upper() not in READ_METHODS:
            return self.write_scopes
        return self.scopes

    def authenticate(self, request: HttpRequest, key: str | None) -> Principal:
        principal = principal_for(key)
        require_scope(principal, *self.scopes_for(request.method or "GET"), any_of=self.any_of)
        tokens = estimate_tokens_of(len(request.body)) if self.meter_tokens else 0
        request.rhetor_token_charge = rate_limit_hit(principal, tokens=tokens)  # type: ignore[attr-defined]
        return principal


def requires(*scopes: str, meter_tokens: bool = False) -> ApiKeyAuth:
    """Every one of `scopes` (none: any valid key)."""
    return ApiKeyAuth(*scopes, meter_tokens=meter_tokens)


def requires_any(*scopes: str) -> ApiKeyAuth:
    return ApiKeyAuth(*scopes, any_of=True)


def by_method(*, read: str, write: str) -> ApiKeyAuth:
    """`read` for GET/HEAD/OPTIONS, `write` for every other method."""
    return ApiKeyAuth(read, write=(write,))


# The declarations the apps use (one line each).
PUBLIC = None
ANY_KEY = requires()
MESSAGES = requires("messages", meter_tokens=True)
PROMPTS = by_method(read="prompts:read", write="prompts:write")
PROMPTS_READ = requires("prompts:read")
BUDGET = by_method(read="budget:read", write="budget:admin")
BUDGET_ADMIN = requires("budget:admin")
CONTEXTS = requires_any("messages", "contexts:admin")
CONTEXTS_ADMIN = requires("contexts:admin")
ALL_SCOPES = requires(*SCOPES)

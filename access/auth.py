"""Who is calling, and may they do this: the API-key authenticator, scopes, the
component lists of pinned keys and the per-key request admission, for REST (ninja) and
the WebSocket. What a pin means for a conversation is contexts.pinning; the gateway's
own admission (scope, pins, requests and tokens) is llm.gateway.acting.

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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone
from ninja.security import APIKeyHeader

from access.errors import (
    COMPONENT_FORBIDDEN,
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

logger = logging.getLogger("rhetor")


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


def request_principal(request: HttpRequest) -> Principal:
    """The principal ninja authenticated (anonymous when the operation is public)."""
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, Principal) else ANONYMOUS


# --- ninja --------------------------------------------------------------------------------

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ApiKeyAuth(APIKeyHeader):
    """ninja authenticator: finds the principal, checks the scope(s), and returns the
    principal (ninja sets it as `request.auth`). With `count_requests` (every operation
    but the gateway's doors, whose requests the gateway itself admits and charges with
    their tokens, llm.gateway.acting) the request is counted against the key's limit."""

    param_name = "X-API-Key"

    def __init__(
        self,
        *scopes: str,
        any_of: bool = False,
        write: tuple[str, ...] | None = None,
        count_requests: bool = True,
    ) -> None:
        unknown = (set(scopes) | set(write or ())) - set(SCOPES)
        if unknown:
            raise ValueError(f"unknown scope(s): {sorted(unknown)}")
        self.scopes = tuple(scopes)
        self.write_scopes = write
        self.any_of = any_of
        self.count_requests = count_requests
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
        if self.count_requests:
            rate_limit_hit(principal)
        return principal


def requires(*scopes: str) -> ApiKeyAuth:
    """Every one of `scopes` (none: any valid key)."""
    return ApiKeyAuth(*scopes)


def requires_any(*scopes: str) -> ApiKeyAuth:
    return ApiKeyAuth(*scopes, any_of=True)


def by_method(*, read: str, write: str) -> ApiKeyAuth:
    """`read` for GET/HEAD/OPTIONS, `write` for every other method."""
    return ApiKeyAuth(read, write=(write,))


# The declarations the apps use (one line each).
PUBLIC = None
ANY_KEY = requires()
# The gateway's HTTP doors: `messages`, checked before the body is read; the pins and the
# rate limit of the request are the gateway's own step (llm.gateway.acting), on every door.
GATEWAY = ApiKeyAuth("messages", count_requests=False)
# A prompt comparison reads prompts; a run of it is a gateway request (needs `messages`).
PROMPTS_COMPARE = ApiKeyAuth("prompts:read", count_requests=False)
PROMPTS = by_method(read="prompts:read", write="prompts:write")
PROMPTS_READ = requires("prompts:read")
BUDGET = by_method(read="budget:read", write="budget:admin")
BUDGET_ADMIN = requires("budget:admin")
CONTEXTS = requires_any("messages", "contexts:admin")
CONTEXTS_ADMIN = requires("contexts:admin")
ALL_SCOPES = requires(*SCOPES)

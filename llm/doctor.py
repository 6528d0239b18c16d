"""`rhetor_doctor`'s checks of the configuration: each says what it found and, when
something is wrong, what to do about it.

A *problem* makes the command fail (non-zero exit): Rhetor would not work as configured.
A *warning* is worth knowing but Rhetor serves (e.g. a provider listed without its key is
simply not used).
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import httpx
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from budget.selectors import model_price_get
from llm.models import TaskRoute
from llm.routes import Target, route_target_errors, seed_routes

Level = Literal["ok", "warning", "problem"]
PROBE_TIMEOUT = 3.0
KEYS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
FREE_PROVIDERS = ("simulated",)


@dataclass(frozen=True)
class Finding:
    level: Level
    check: str
    message: str
    fix: str = ""


def check_database() -> list[Finding]:
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        return [
            Finding(
                "problem",
                "database",
                f"cannot reach the {connection.vendor} database: {exc}",
                "check DATABASE_URL and that the database server is running",
            )
        ]
    if pending:
        return [
            Finding(
                "problem",
                "database",
                f"{len(pending)} migration(s) not applied",
                "run: manage.py migrate",
            )
        ]
    return [Finding("ok", "database", f"{connection.vendor} database reachable and migrated")]


def _probe(
    url: str, headers: dict[str, str], *, get: Callable[..., httpx.Response]
) -> tuple[int | None, str]:
    try:
        response = get(url, headers=headers, timeout=PROBE_TIMEOUT)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return response.status_code, ""


def provider_endpoints() -> dict[str, tuple[str, dict[str, str]]]:
    anthropic_base = (settings.ANTHROPIC_BASE_URL or "https://api.anthropic.com").rstrip("/")
    openai_base = (settings.OPENAI_BASE_URL or "https://api.openai.com/v1").rstrip("/")
    return {
        "anthropic": (
            f"{anthropic_base}/v1/models",
            {"x-api-key": settings.ANTHROPIC_API_KEY, "anthropic-version": "2023-06-01"},
        ),
        "openai": (
            f"{openai_base}/models",
            {"Authorization": f"Bearer {settings.OPENAI_API_KEY}"},
        ),
        "ollama": (f"{settings.OLLAMA_BASE_URL.rstrip('/')}/api/tags", {}),
    }


def check_providers(*, get: Callable[..., httpx.Response] = httpx.get) -> list[Finding]:
    """Keys present for the enabled providers, and each configured one reachable (any HTTP
    answer but 401/403 means the server is there and takes the key)."""
    findings: list[Finding] = []
    enabled = list(settings.RHETOR_PROVIDERS)
    endpoints = provider_endpoints()
    for provider in enabled:
        if provider in FREE_PROVIDERS:
            findings.append(Finding("ok", provider, "always available (simulated answers)"))
            continue
        if provider not in endpoints:
            findings.append(
                Finding(
                    "problem",
                    provider,
                    f"unknown provider {provider!r} in RHETOR_PROVIDERS",
                    "remove it from RHETOR_PROVIDERS",
                )
            )
            continue
        key = KEYS.get(provider)
        if key and not getattr(settings, key):
            findings.append(
                Finding(
                    "warning",
                    provider,
                    f"enabled but {key} is not set, so it is not used",
                    f"set {key} (or {key}_FILE), or remove {provider} from RHETOR_PROVIDERS",
                )
            )
            continue
        url, headers = endpoints[provider]
        status, error = _probe(url, headers, get=get)
        if status is None:
            level: Level = "warning" if provider == "ollama" else "problem"
            findings.append(
                Finding(
                    level,
                    provider,
                    f"not reachable at {url}: {error}",
                    "start Ollama or set OLLAMA_BASE_URL (or remove ollama from RHETOR_PROVIDERS)"
                    if provider == "ollama"
                    else f"check the network and {provider.upper()}_BASE_URL",
                )
            )
        elif status in (401, 403):
            findings.append(
                Finding(
                    "problem",
                    provider,
                    f"the key was rejected (HTTP {status}) at {url}",
                    f"set a valid {key}",
                )
            )
        else:
            findings.append(Finding("ok", provider, f"reachable (HTTP {status} from {url})"))
    return findings


def routed_targets() -> dict[Target, list[str]]:
    """Every provider/model the routes may send to, with the routes that name it."""
    targets: dict[Target, list[str]] = {}
    for route in TaskRoute.objects.all():
        for item in [{"provider": route.provider, "model": route.model}, *route.fallbacks]:
            targets.setdefault(Target(item["provider"], item["model"]), []).append(route.name)
    return targets


def check_routes() -> list[Finding]:
    try:
        seed_routes()
    except ImproperlyConfigured as exc:
        return [Finding("problem", "routes", str(exc), "fix the RHETOR_TASK_CONFIG file")]
    rows = list(TaskRoute.objects.all())
    if not rows:
        return [Finding("ok", "routes", "no routes yet: seeded on first use from the defaults")]
    findings = []
    for row in rows:
        errors = route_target_errors(
            provider=row.provider, model=row.model, fallbacks=row.fallbacks
        )
        for messages in errors.values():
            for message in messages:
                findings.append(
                    Finding(
                        "problem",
                        "routes",
                        f"route {row.name!r}: {message}",
                        "edit the route in the admin (Task routes) or with routes_import",
                    )
                )
    if not findings:
        findings.append(Finding("ok", "routes", f"{len(rows)} task routes, all valid"))
    return findings


def check_prices(targets: Iterable[Target] | None = None) -> list[Finding]:
    """A routed model without a price of its own is charged at its provider's highest."""
    findings = []
    chosen = list(targets) if targets is not None else sorted(routed_targets(), key=str)
    for target in chosen:
        if target.provider in FREE_PROVIDERS:
            continue
        quote = model_price_get(provider=target.provider, model=target.model)
        if quote is None or quote.is_fallback:
            findings.append(
                Finding(
                    "problem",
                    "prices",
                    f"no price for routed model {target}"
                    + (
                        f"; charged at {quote.price.provider}/{quote.price.model}'s"
                        if quote
                        else "; it cannot be metered"
                    ),
                    f"set one: manage.py set_price {target.provider} {target.model} "
                    "--input <USD> --output <USD> --per 1m (or Model prices in the admin)",
                )
            )
    if not findings:
        findings.append(Finding("ok", "prices", "every routed model has a price"))
    return findings


def check_redis() -> list[Finding]:
    workers = settings.RHETOR_WORKERS
    if not settings.REDIS_URL:
        if workers > 1:
            return [
                Finding(
                    "problem",
                    "redis",
                    f"RHETOR_WORKERS={workers} needs Redis, but REDIS_URL is not set",
                    "set REDIS_URL=redis://host:6379/0, or RHETOR_WORKERS=1",
                )
            ]
        return [Finding("ok", "redis", "not needed (one worker, in-memory layer and cache)")]
    try:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=PROBE_TIMEOUT)
        client.ping()
    except Exception as exc:
        return [
            Finding(
                "problem",
                "redis",
                f"REDIS_URL is set but Redis does not answer: {exc}",
                "start Redis or fix REDIS_URL",
            )
        ]
    return [Finding("ok", "redis", "reachable")]


def check_hermes(*, get: Callable[..., httpx.Response] = httpx.get) -> list[Finding]:
    url = settings.HERMES_API_URL
    if not url:
        return [Finding("ok", "hermes", "HERMES_API_URL not set: not registering with Hermes")]
    status, error = _probe(url.rstrip("/") + "/api/health", {}, get=get)
    if status is None:
        return [
            Finding(
                "problem",
                "hermes",
                f"HERMES_API_URL={url} does not answer: {error}",
                "start Hermes or fix HERMES_API_URL (Rhetor serves without it, and retries)",
            )
        ]
    return [Finding("ok", "hermes", f"reachable (HTTP {status})")]


def run_checks(*, get: Callable[..., httpx.Response] = httpx.get) -> list[Finding]:
    findings = check_database()
    if findings[0].level == "problem":
        return findings + check_redis() + check_hermes(get=get)
    findings += check_providers(get=get)
    findings += check_routes()
    try:
        findings += check_prices()
    except ValidationError as exc:  # pragma: no cover - defensive
        findings.append(Finding("problem", "prices", "; ".join(exc.messages)))
    findings += check_redis()
    findings += check_hermes(get=get)
    return findings

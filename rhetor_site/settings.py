"""Rhetor settings. Everything comes from the environment (django-environ).

With nothing set, Rhetor runs on SQLite, the in-memory channel layer and the simulated
provider. `DATABASE_URL` and `REDIS_URL` switch to the scale-out setup.
"""

import os
from pathlib import Path

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured

# Lets admin classes be written typed, `admin.ModelAdmin[M]` (HOUSE_STYLE R16), at run time.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")  # optional file; real environment variables win


def env_secret(name: str, default: str = "") -> str:
    """Read a secret from NAME, or from the file named by NAME_FILE."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    value: str = env.str(name, default=default)
    return value


DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env_secret("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG and env.bool("DJANGO_REQUIRE_SECRET_KEY", default=False):
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set in production.")
    # The default run is a loopback development server; a fixed key there is harmless,
    # and issue #8's deploy check refuses it for anything else.
    SECRET_KEY = "rhetor-insecure-development-key-change-me"  # noqa: S105
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
# Browser origins (besides the site itself) allowed to use the API and the WebSocket,
# e.g. the Tekton UI: "http://localhost:8080". Nothing else.
RHETOR_CORS_ORIGINS = env.list("RHETOR_CORS_ORIGINS", default=[])
# django-cors-headers answers preflights and adds the CORS headers for exactly these
# origins; any other origin gets no CORS header at all (so its page cannot read replies).
CORS_ALLOWED_ORIGINS = RHETOR_CORS_ORIGINS
CORS_ALLOW_HEADERS = (
    *("accept", "authorization", "content-type", "user-agent", "x-requested-with"),
    "x-api-key",
)
CORS_EXPOSE_HEADERS = ["Retry-After"]

# --- HTTPS and cookies (manage.py check --deploy passes with RHETOR_SECURE_HTTPS=true) -----
# Behind a TLS-terminating proxy, set RHETOR_SECURE_PROXY_SSL_HEADER=true so Django trusts
# its X-Forwarded-Proto (only if the proxy always sets it).
RHETOR_SECURE_HTTPS = env.bool("RHETOR_SECURE_HTTPS", default=False)
if env.bool("RHETOR_SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("RHETOR_SECURE_SSL_REDIRECT", default=RHETOR_SECURE_HTTPS)
# Load balancers probe /health over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^health$"]
SECURE_HSTS_SECONDS = env.int(
    "RHETOR_SECURE_HSTS_SECONDS", default=31_536_000 if RHETOR_SECURE_HTTPS else 0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool(
    "RHETOR_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=RHETOR_SECURE_HTTPS
)
SECURE_HSTS_PRELOAD = env.bool("RHETOR_SECURE_HSTS_PRELOAD", default=RHETOR_SECURE_HTTPS)
SESSION_COOKIE_SECURE = env.bool("RHETOR_SECURE_COOKIES", default=RHETOR_SECURE_HTTPS)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "corsheaders",
    "access",
    "llm",
    "prompts",
    "budget",
    "contexts",
]

MIDDLEWARE = [
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The API's {"error", "code"} also for Django's own 400/404/405 (rhetor_site/middleware.py).
    "rhetor_site.middleware.json_errors",
    # Sessions, auth and messages only for the console (/admin/), CommonMiddleware without
    # thread hops (rhetor_site/middleware.py).
    "rhetor_site.middleware.SessionMiddleware",
    "rhetor_site.middleware.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "rhetor_site.middleware.AuthenticationMiddleware",
    "rhetor_site.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "rhetor_site.urls"
ASGI_APPLICATION = "rhetor_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database (R13) ---------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'rhetor.sqlite3'}")}
_engine = DATABASES["default"]["ENGINE"]
if _engine.endswith("sqlite3"):
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;"
            ),
            "transaction_mode": "IMMEDIATE",
        }
    )
    # Request threads are reused (rhetor_site/handler.py), so their connections can be:
    # a new SQLite connection per request cost a file open and the PRAGMAs above.
    DATABASES["default"]["CONN_MAX_AGE"] = None
elif "postgresql" in _engine:
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A pooled connection is checked (an empty query) before it is handed out, so after a
    # database restart no request gets a dead one (the first request used to fail).
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("RHETOR_DB_HEALTH_CHECKS", default=True)
    options = DATABASES["default"].setdefault("OPTIONS", {})
    # A database that does not answer is given up on quickly: connecting waits at most
    # this many seconds (libpq's connect_timeout, whole seconds) ...
    options.setdefault("connect_timeout", env.int("RHETOR_DB_CONNECT_TIMEOUT", default=2))
    # ... and a request waits at most this long for a pooled connection, so during an
    # outage it gets its 503 within about a second, not after psycopg_pool's 30 s.
    # Each request thread borrows a connection only for its short database steps (see
    # rhetor_site.db.released), so a worker needs far fewer connections than requests in
    # flight; psycopg_pool's default of 4 made requests queue under load.
    options["pool"] = {
        "timeout": env.float("RHETOR_DB_POOL_TIMEOUT", default=1.0),
        "min_size": 2,
        "max_size": env.int("RHETOR_DB_POOL_SIZE", default=16),
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channels and cache (R18) -----------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
RHETOR_WORKERS = env.int("RHETOR_WORKERS", default=1)
if RHETOR_WORKERS > 1 and not REDIS_URL:
    raise ImproperlyConfigured(
        "RHETOR_WORKERS > 1 needs REDIS_URL: the in-memory channel layer and cache "
        "cannot reach across processes."
    )
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "rhetor"},
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
RHETOR_SERVE_STATIC = env.bool("RHETOR_SERVE_STATIC", default=True)

# --- Logging ------------------------------------------------------------------------
RHETOR_LOG_LEVEL = env.str("RHETOR_LOG_LEVEL", default="info").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # No provider or API key reaches a log line (rhetor_site.redaction).
    "filters": {"redact_secrets": {"()": "rhetor_site.redaction.RedactingFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        name: {"handlers": ["console"], "level": RHETOR_LOG_LEVEL, "propagate": False}
        for name in ("rhetor", "llm", "prompts", "budget", "contexts")
    },
}

# --- Rhetor -------------------------------------------------------------------------
RHETOR_VERSION = "0.2.0"
RHETOR_HOST = env.str("RHETOR_HOST", default="127.0.0.1")
RHETOR_PORT = env.int("RHETOR_PORT", default=8300)
# Access (access/auth.py). Unset: API keys are required unless RHETOR_HOST is loopback;
# true/false forces either way.
RHETOR_REQUIRE_AUTH: bool | None = (
    env.bool("RHETOR_REQUIRE_AUTH") if env.str("RHETOR_REQUIRE_AUTH", default="") else None
)
# How long a worker trusts its cached copy of a key: a revocation takes effect within it.
RHETOR_API_KEY_CACHE_SECONDS = env.float("RHETOR_API_KEY_CACHE_SECONDS", default=5.0)
# Per-key limits for keys that set none (0: unlimited); shared across workers via Redis.
RHETOR_RATE_LIMIT_RPM = env.int("RHETOR_RATE_LIMIT_RPM", default=600)
RHETOR_RATE_LIMIT_TPM = env.int("RHETOR_RATE_LIMIT_TPM", default=1_000_000)
# Providers Rhetor may use; a real one is enabled only when it is configured (key set,
# or for Ollama, reachable).
RHETOR_PROVIDERS = env.list(
    "RHETOR_PROVIDERS", default=["anthropic", "openai", "ollama", "simulated"]
)
RHETOR_TASK_CONFIG = env.str("RHETOR_TASK_CONFIG", default="")
# How often (seconds) each worker checks whether the task routes were edited (llm.route_table).
RHETOR_ROUTES_RECHECK_SECONDS = env.float("RHETOR_ROUTES_RECHECK_SECONDS", default=1.0)
# How soon other workers pick up a changed price (limits: from the next request).
RHETOR_BUDGET_RECHECK_SECONDS = env.float("RHETOR_BUDGET_RECHECK_SECONDS", default=1.0)
RHETOR_PROVIDER_TIMEOUT = env.float("RHETOR_PROVIDER_TIMEOUT", default=120.0)
RHETOR_CONNECT_TIMEOUT = env.float("RHETOR_CONNECT_TIMEOUT", default=5.0)
# Circuit breaker per provider+model (llm/circuit.py): open after this many consecutive
# retryable failures, skip the model for the cooldown, then let one probe through.
RHETOR_CIRCUIT_FAILURE_THRESHOLD = env.int("RHETOR_CIRCUIT_FAILURE_THRESHOLD", default=5)
RHETOR_CIRCUIT_COOLDOWN = env.float("RHETOR_CIRCUIT_COOLDOWN", default=30.0)
# A 429/503 with Retry-After up to this many seconds is waited out and the same model tried
# once more; a longer one opens that model's circuit for the Retry-After (at most
# RHETOR_RETRY_AFTER_MAX_HOLD seconds) and the request falls back at once.
RHETOR_RETRY_AFTER_MAX_WAIT = env.float("RHETOR_RETRY_AFTER_MAX_WAIT", default=2.0)
RHETOR_RETRY_AFTER_MAX_HOLD = env.float("RHETOR_RETRY_AFTER_MAX_HOLD", default=600.0)
# Input limits: request body (413), one message's characters and the number of messages
# of a /chat conversation (422 naming the field), one WebSocket frame (an ERROR frame).
RHETOR_MAX_BODY_BYTES = env.int("RHETOR_MAX_BODY_BYTES", default=4 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = RHETOR_MAX_BODY_BYTES
RHETOR_MAX_MESSAGE_CHARS = env.int("RHETOR_MAX_MESSAGE_CHARS", default=1_000_000)
RHETOR_MAX_CHAT_MESSAGES = env.int("RHETOR_MAX_CHAT_MESSAGES", default=1000)
RHETOR_MAX_WS_FRAME_BYTES = env.int("RHETOR_MAX_WS_FRAME_BYTES", default=4 * 1024 * 1024)
# What daphne itself reads of one WebSocket message (`serve` passes it on): a frame over
# RHETOR_MAX_WS_FRAME_BYTES but within this is read and answered with an ERROR frame, the
# socket left open; one beyond it is refused by daphne with close code 1009 (too big).
RHETOR_WS_TRANSPORT_MAX_BYTES = env.int(
    "RHETOR_WS_TRANSPORT_MAX_BYTES", default=4 * RHETOR_MAX_WS_FRAME_BYTES
)
# On SIGTERM/SIGINT a worker stops accepting and gives what is in flight this long to
# finish before it cuts it (rhetor_site/worker.py).
RHETOR_SHUTDOWN_GRACE_SECONDS = env.float("RHETOR_SHUTDOWN_GRACE_SECONDS", default=30.0)
# A usage record whose database write fails (database down) is retried this long within
# the request, then in the background until the database answers again.
RHETOR_SETTLE_RETRY_SECONDS = env.float("RHETOR_SETTLE_RETRY_SECONDS", default=10.0)
# Delay between simulated tokens, seconds: a realistic cadence by default.
RHETOR_SIMULATED_DELAY = env.float("RHETOR_SIMULATED_DELAY", default=0.02)
# Load the offline tokenizer when a server process starts rather than on its first request.
RHETOR_WARM_TOKENIZER = env.bool("RHETOR_WARM_TOKENIZER", default=True)

ANTHROPIC_API_KEY = env_secret("ANTHROPIC_API_KEY")
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="")
OPENAI_API_KEY = env_secret("OPENAI_API_KEY")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="")
OLLAMA_BASE_URL = env.str("OLLAMA_BASE_URL", default="http://localhost:11434")
# Extra model ids a provider accepts beyond the built-in catalogue (comma lists).
RHETOR_ANTHROPIC_MODELS = env.list("RHETOR_ANTHROPIC_MODELS", default=[])
RHETOR_OPENAI_MODELS = env.list("RHETOR_OPENAI_MODELS", default=[])

RHETOR_TIMEZONE = env.str("RHETOR_TIMEZONE", default="UTC")
RHETOR_BUDGET_POLICY = env.str("RHETOR_BUDGET_POLICY", default="warn")
RHETOR_BUDGET_DAILY_LIMIT = env.str("RHETOR_BUDGET_DAILY_LIMIT", default="")
RHETOR_BUDGET_WEEKLY_LIMIT = env.str("RHETOR_BUDGET_WEEKLY_LIMIT", default="")
RHETOR_BUDGET_MONTHLY_LIMIT = env.str("RHETOR_BUDGET_MONTHLY_LIMIT", default="")
RHETOR_ALLOW_BUDGET_BYPASS = env.bool("RHETOR_ALLOW_BUDGET_BYPASS", default=False)

HERMES_API_URL = env.str("HERMES_API_URL", default="")
ENGRAM_URL = env.str("ENGRAM_URL", default="")

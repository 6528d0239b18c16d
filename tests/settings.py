import os

from rhetor_site.settings import *

SECRET_KEY = "test-only"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Tests never reach a real provider: only the simulated one unless a test points a real
# provider at a local fake upstream.
RHETOR_PROVIDERS = ["simulated"]
ANTHROPIC_API_KEY = ""
OPENAI_API_KEY = ""
OLLAMA_BASE_URL = "http://127.0.0.1:9"
RHETOR_SIMULATED_DELAY = 0.0
RHETOR_WARM_TOKENIZER = False
RHETOR_TASK_CONFIG = ""
# Every lookup checks the routes' version, so a test sees the routes the previous one left.
RHETOR_ROUTES_RECHECK_SECONDS = 0.0
RHETOR_BUDGET_RECHECK_SECONDS = 0.0
HERMES_API_URL = ""
ENGRAM_URL = ""
# Transactional tests with serialized_rollback restore the seeded rows (default prompts,
# prices); content types and permissions are recreated by the flush itself.
TEST_NON_SERIALIZED_APPS = ["django.contrib.contenttypes", "django.contrib.auth"]
# Several test runs on one PostgreSQL server (parallel checkouts, helpers) each need their
# own test database: RHETOR_TEST_DB_NAME names it (default Django's "test_<name>").
# (SQLite tests run in memory.)
if os.environ.get("RHETOR_TEST_DB_NAME") and "postgresql" in DATABASES["default"]["ENGINE"]:
    DATABASES["default"]["TEST"] = {"NAME": os.environ["RHETOR_TEST_DB_NAME"]}

"""Provider keys and API keys never appear in error bodies, logs or the admin."""

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.test import AsyncClient

from llm.providers import get_provider, reset_providers
from rhetor_site.errors import RhetorError
from rhetor_site.redaction import RedactingFilter, redact
from tests.fakes import FakeUpstream

PROVIDER_KEY = "sk-proj-THISISTHEREALPROVIDERKEY1234567890"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
async def openai_with_key(upstream: FakeUpstream, settings: Any) -> AsyncIterator[FakeUpstream]:
    upstream.reset()
    settings.RHETOR_PROVIDERS = ["openai", "simulated"]
    settings.OPENAI_API_KEY = PROVIDER_KEY
    settings.OPENAI_BASE_URL = f"{upstream.url}/v1"
    await reset_providers()
    assert get_provider("openai") is not None
    yield upstream
    await reset_providers()
    upstream.reset()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_an_upstream_that_echoes_the_key_does_not_leak_it(
    openai_with_key: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    echoed = f"Incorrect API key provided: {PROVIDER_KEY}. Rhetor key rk_1a2b3c4d_Zsecretpart99"
    openai_with_key.fail(400, message=echoed, path="openai")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logging.getLogger().addHandler(handler)
    try:
        response = await AsyncClient().post(
            "/message",
            json.dumps({"message": "hi", "options": {"provider": "openai", "model": "gpt-4o"}}),
            content_type="application/json",
        )
    finally:
        logging.getLogger().removeHandler(handler)

    assert response.status_code == 400
    body = response.content.decode()
    assert "Incorrect API key provided: [redacted]" in body
    assert PROVIDER_KEY not in body
    assert "Zsecretpart99" not in body
    assert "rk_1a2b3c4d_[redacted]" in body
    assert PROVIDER_KEY not in stream.getvalue()
    assert openai_with_key.last_request("openai").headers["authorization"] == (
        f"Bearer {PROVIDER_KEY}"
    )


def test_errors_redact_configured_secrets_and_key_shapes(settings: Any) -> None:
    settings.ANTHROPIC_API_KEY = "my-anthropic-secret-value"

    exc = RhetorError(
        "failed with my-anthropic-secret-value and sk-ant-api03-abcdefghijklmnop",
        detail={"echo": "rk_0011aabb_abcdefghijklmnopqrstuvwxyz"},
    )

    assert exc.message == "failed with [redacted] and [redacted]"
    assert exc.as_body()["detail"] == {"echo": "rk_0011aabb_[redacted]"}


def test_the_log_filter_redacts_arguments_and_tracebacks() -> None:
    record = logging.LogRecord(
        "llm", logging.ERROR, __file__, 1, "key %s failed", ("rk_0011aabb_SECRETSECRET1",), None
    )
    try:
        raise ValueError("sk-ant-api03-zzzzzzzzzzzzzzzzz")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()

    RedactingFilter().filter(record)

    assert record.getMessage() == "key rk_0011aabb_[redacted] failed"
    assert "zzzzzzzzzzzzzzzzz" not in (record.exc_text or "")


def test_the_filter_is_installed_on_rhetors_handlers() -> None:
    # The handlers settings.LOGGING made (pytest adds its own capture handlers to root).
    handlers = [
        h
        for h in logging.getLogger("llm").handlers + logging.getLogger().handlers
        if h.get_name() == "console"
    ]
    assert handlers
    assert all(any(isinstance(f, RedactingFilter) for f in h.filters) for h in handlers)


def test_redact_leaves_ordinary_text_alone() -> None:
    assert redact("budget for ergon: $1.00 of $5.00") == "budget for ergon: $1.00 of $5.00"


@pytest.mark.django_db
def test_list_api_keys_never_prints_a_secret() -> None:
    out = io.StringIO()
    call_command("create_api_key", "--name", "ergon", "--scopes", "messages", stdout=out)
    token = out.getvalue().strip().splitlines()[-1]

    listed = io.StringIO()
    call_command("list_api_keys", stdout=listed)

    assert token.rsplit("_", 1)[0][:11] in listed.getvalue()  # rk_<id>
    assert token.split("_", 2)[2] not in listed.getvalue()

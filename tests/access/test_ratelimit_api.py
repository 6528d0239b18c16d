"""Per-key rate limits over the API: 429 rate_limited with Retry-After."""

import json
from typing import Any

import pytest
from django.test import Client, override_settings

from access.auth import BYTES_PER_TOKEN
from access.ratelimit import rate_limiter
from budget.models import UsageRecord
from tests.access.conftest import key_headers, make_key

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("remote")]


@pytest.fixture
def remote() -> Any:
    with override_settings(RHETOR_HOST="0.0.0.0", RHETOR_REQUIRE_AUTH=None):  # noqa: S104
        yield


def message(client: Client, headers: dict[str, str], text: str = "hi") -> Any:
    body = json.dumps({"message": text, "context_id": "ergon:rl"})
    return client.post("/message", body, content_type="application/json", **headers)


def test_requests_over_the_keys_limit_are_429_with_retry_after(client: Client) -> None:
    headers = key_headers(make_key(scopes="budget:read", rpm=2).token)

    statuses = [client.get("/budget", **headers).status_code for _ in range(3)]
    refused = client.get("/budget", **headers)

    assert statuses == [200, 200, 429]
    assert refused.status_code == 429
    body = refused.json()
    assert body["code"] == "rate_limited"
    assert body["limit"] == "requests_per_minute"
    assert int(refused["Retry-After"]) == body["retry_after"] >= 1
    assert "2 requests per minute" in body["error"]


def test_keys_have_separate_limits(client: Client) -> None:
    first = key_headers(make_key(name="a", scopes="budget:read", rpm=1).token)
    second = key_headers(make_key(name="b", scopes="budget:read", rpm=1).token)

    assert client.get("/budget", **first).status_code == 200
    assert client.get("/budget", **first).status_code == 429
    assert client.get("/budget", **second).status_code == 200


def test_the_env_default_applies_to_keys_without_their_own_limit(client: Client) -> None:
    headers = key_headers(make_key(scopes="budget:read", rpm=None).token)

    with override_settings(RHETOR_RATE_LIMIT_RPM=1):
        # The key's limits are read when it is loaded (cached per process).
        assert client.get("/budget", **headers).status_code == 200
        assert client.get("/budget", **headers).status_code == 429


def test_a_request_refused_for_its_tokens_sends_nothing_upstream(client: Client) -> None:
    headers = key_headers(make_key(scopes="messages", tpm=400).token)

    first = message(client, headers, "x" * 1000)  # ~250 tokens estimated, then settled
    records = UsageRecord.objects.count()
    second = message(client, headers, "y" * 1000)

    assert first.status_code == 200
    assert second.status_code == 429
    assert second.json()["limit"] == "tokens_per_minute"
    assert UsageRecord.objects.count() == records


def test_the_estimate_is_settled_to_the_providers_count(client: Client, settings: Any) -> None:
    settings.REDIS_URL = ""  # the in-memory limiter, whose counters the test reads
    created = make_key(scopes="messages", tpm=10_000)
    body_size = len(json.dumps({"message": "x" * 4000, "context_id": "ergon:rl"}))

    response = message(client, key_headers(created.token), "x" * 4000)

    usage = response.json()["usage"]
    used = usage["input_tokens"] + usage["output_tokens"]
    estimate = -(-body_size // BYTES_PER_TOKEN)
    assert used != estimate
    limiter = rate_limiter()
    windows = limiter._windows  # type: ignore[attr-defined]
    assert sum(v[1] for (subject, _), v in windows.items() if subject == created.key.key_id) == used


def test_a_refused_request_with_a_missing_scope_is_not_counted(client: Client) -> None:
    headers = key_headers(make_key(scopes="budget:read", rpm=1).token)

    assert (
        client.post("/budget/policy", "{}", content_type="application/json", **headers).status_code
        == 403
    )
    assert client.get("/budget", **headers).status_code == 200


def test_anonymous_loopback_use_is_not_rate_limited(client: Client) -> None:
    with override_settings(RHETOR_HOST="127.0.0.1", RHETOR_RATE_LIMIT_RPM=1):
        assert [client.get("/budget").status_code for _ in range(3)] == [200, 200, 200]


def test_an_unreachable_rate_limiter_is_a_clean_503(client: Client, settings: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    headers = key_headers(make_key(scopes="budget:read", rpm=10).token)

    response = client.get("/budget", **headers)

    assert response.status_code == 503
    assert response.json()["code"] == "rate_limiter_unavailable"

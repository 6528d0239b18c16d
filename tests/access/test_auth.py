"""REST authentication: who gets in, with which key, and the scope each endpoint needs."""

import datetime as dt
import json
from typing import Any

import pytest
import time_machine
from django.test import Client, override_settings
from django.utils import timezone

from access.auth import ALL_SCOPES, ApiKeyAuth, auth_required, principal_for_token
from access.keycache import forget_key
from access.models import ApiKey
from access.services import api_key_revoke, secret_hash
from budget.models import BudgetLimit
from rhetor_site.api import api
from tests.access.conftest import bearer, key_headers, make_key

pytestmark = pytest.mark.django_db

REMOTE = {"RHETOR_HOST": "0.0.0.0", "RHETOR_REQUIRE_AUTH": None}  # noqa: S104


def test_loopback_without_a_key_is_anonymous_with_every_scope(client: Client) -> None:
    assert auth_required() is False

    response = client.post(
        "/budget/limit",
        json.dumps({"period": "daily", "limit_amount": "5"}),
        content_type="application/json",
    )

    assert response.status_code == 200
    assert BudgetLimit.objects.filter(period="daily").exists()


@override_settings(**REMOTE)
@pytest.mark.parametrize(
    ("_case", "method", "path"),
    [
        ("budget", "get", "/budget"),
        ("providers", "get", "/providers"),
        ("prompts", "get", "/prompts"),
        ("contexts", "get", "/contexts"),
        ("message", "post", "/message"),
        ("openai models", "get", "/v1/models"),
    ],
)
def test_a_non_loopback_server_refuses_requests_without_a_key(
    client: Client, _case: str, method: str, path: str
) -> None:
    response = getattr(client, method)(path)

    assert response.status_code == 401
    if path.startswith("/v1/"):
        assert response.json()["error"]["code"] == "unauthorized"
    else:
        assert response.json() == {
            "error": "A valid API key is required (X-API-Key or Authorization: Bearer)",
            "code": "unauthorized",
        }
    assert response["WWW-Authenticate"].startswith("Bearer")


@override_settings(**REMOTE)
def test_health_and_root_stay_public(client: Client) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/").status_code == 200


@pytest.mark.parametrize(
    ("_case", "host", "forced", "required"),
    [
        ("loopback v4", "127.0.0.1", None, False),
        ("loopback v6", "::1", None, False),
        ("localhost", "localhost", None, False),
        ("all interfaces", "0.0.0.0", None, True),  # noqa: S104
        ("lan address", "10.0.0.5", None, True),
        ("forced on loopback", "127.0.0.1", True, True),
        ("forced off remote", "0.0.0.0", False, False),  # noqa: S104
    ],
)
def test_auth_is_required_off_loopback_unless_forced(
    _case: str, host: str, forced: bool | None, required: bool
) -> None:
    with override_settings(RHETOR_HOST=host, RHETOR_REQUIRE_AUTH=forced):
        assert auth_required() is required


@override_settings(RHETOR_REQUIRE_AUTH=True)
def test_forced_auth_refuses_anonymous_on_loopback(client: Client) -> None:
    assert client.get("/budget").status_code == 401


@override_settings(**REMOTE)
@pytest.mark.parametrize(("_case", "headers"), [("x-api-key", key_headers), ("bearer", bearer)])
def test_a_valid_key_is_accepted_in_either_header(client: Client, _case: str, headers: Any) -> None:
    created = make_key(scopes="budget:read")

    response = client.get("/budget", **headers(created.token))

    assert response.status_code == 200
    assert "daily" in response.json()


@pytest.mark.parametrize(
    ("_case", "mangle"),
    [
        ("wrong secret", lambda t: t[:-4] + "AAAA"),
        ("unknown id", lambda t: "rk_00000000_" + t.split("_", 2)[2]),
        ("truncated", lambda t: t[:14]),
    ],
)
def test_a_bad_rhetor_key_is_refused_even_on_loopback(
    client: Client, _case: str, mangle: Any
) -> None:
    created = make_key()

    response = client.get("/budget", **key_headers(mangle(created.token)))

    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


def test_a_foreign_sdk_key_on_loopback_is_anonymous(client: Client) -> None:
    # The OpenAI SDK insists on sending a key; on loopback a non-Rhetor one is ignored.
    assert client.get("/budget", **bearer("sk-local-anything")).status_code == 200


@override_settings(**REMOTE)
def test_a_foreign_sdk_key_is_refused_when_auth_is_required(client: Client) -> None:
    assert client.get("/budget", **bearer("sk-local-anything")).status_code == 401


@override_settings(**REMOTE)
def test_a_revoked_key_is_refused_at_once_in_the_revoking_process(client: Client) -> None:
    created = make_key(scopes="budget:read")
    assert client.get("/budget", **key_headers(created.token)).status_code == 200

    api_key_revoke(key_id=created.key.prefix)

    assert client.get("/budget", **key_headers(created.token)).status_code == 401


@override_settings(**REMOTE)
def test_a_revocation_elsewhere_reaches_this_process_when_its_cache_expires(
    client: Client,
) -> None:
    created = make_key(scopes="budget:read")
    assert client.get("/budget", **key_headers(created.token)).status_code == 200
    # Another process revokes: the row changes, this process's cache does not.
    ApiKey.objects.filter(pk=created.key.pk).update(revoked_at=timezone.now())

    with override_settings(RHETOR_API_KEY_CACHE_SECONDS=60):
        assert client.get("/budget", **key_headers(created.token)).status_code == 200
    forget_key(created.key.key_id)  # what the cache's expiry does
    assert client.get("/budget", **key_headers(created.token)).status_code == 401


def test_the_key_is_stored_only_as_a_hash() -> None:
    created = make_key()
    row = ApiKey.objects.get(pk=created.key.pk)
    secret = created.token.split("_", 2)[2]

    assert created.token.startswith(f"rk_{row.key_id}_")
    assert row.secret_hash == secret_hash(secret)
    assert secret not in json.dumps(
        {f.name: str(getattr(row, f.name)) for f in ApiKey._meta.fields}
    )


def test_authentication_is_one_indexed_query_then_cached(django_assert_num_queries: Any) -> None:
    created = make_key()
    ApiKey.objects.filter(pk=created.key.pk).update(last_used_at=timezone.now())

    with django_assert_num_queries(1):
        principal_for_token(created.token)
    with django_assert_num_queries(0):
        for _ in range(5):
            principal_for_token(created.token)


@override_settings(RHETOR_API_KEY_CACHE_SECONDS=0)
def test_last_used_is_written_at_most_once_a_minute(django_assert_num_queries: Any) -> None:
    created = make_key()
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        with django_assert_num_queries(2):  # the lookup, and the first use recorded
            principal_for_token(created.token)
        with django_assert_num_queries(1):  # the lookup only
            principal_for_token(created.token)
    assert ApiKey.objects.get(pk=created.key.pk).last_used_at == start

    later = start + dt.timedelta(minutes=2)
    with time_machine.travel(later, tick=False):
        principal_for_token(created.token)
    assert ApiKey.objects.get(pk=created.key.pk).last_used_at == later


# --- scopes --------------------------------------------------------------------------------


@override_settings(**REMOTE)
def test_a_missing_scope_is_a_403_naming_it_and_nothing_changes(client: Client) -> None:
    created = make_key(scopes="budget:read")

    response = client.post(
        "/budget/limit",
        json.dumps({"period": "daily", "limit_amount": "5"}),
        content_type="application/json",
        **key_headers(created.token),
    )

    assert response.status_code == 403
    assert response.json() == {
        "error": "This API key lacks the 'budget:admin' scope",
        "code": "forbidden",
        "scope": "budget:admin",
    }
    assert not BudgetLimit.objects.exists()


# (method, path, body, the scope it needs)
SCOPE_TABLE = [
    ("post", "/message", {"message": "hi"}, "messages"),
    ("post", "/stream", {"message": "hi"}, "messages"),
    ("post", "/chat", {"messages": [{"role": "user", "content": "hi"}]}, "messages"),
    ("post", "/v1/chat/completions", {"model": "rhetor/chat", "messages": []}, "messages"),
    ("post", "/provider", {"provider_id": "simulated"}, "budget:admin"),
    ("get", "/prompts", None, "prompts:read"),
    ("get", "/templates", None, "prompts:read"),
    ("post", "/templates/render", {"template_id": "x"}, "prompts:read"),
    ("post", "/prompts", {"name": "x", "component": "ergon", "content": "y"}, "prompts:write"),
    ("delete", "/prompts/ergon_default", None, "prompts:write"),
    ("get", "/budget", None, "budget:read"),
    ("get", "/budget/usage", None, "budget:read"),
    ("post", "/budget/policy", {"period": "daily", "policy": "warn"}, "budget:admin"),
    ("get", "/contexts", None, "messages|contexts:admin"),
    ("delete", "/contexts/ergon:x", None, "messages|contexts:admin"),
]


@override_settings(**REMOTE)
@pytest.mark.parametrize(("method", "path", "body", "scope"), SCOPE_TABLE)
def test_each_endpoint_needs_its_scope(
    client: Client, method: str, path: str, body: Any, scope: str
) -> None:
    needed = scope.split("|")  # any one of them
    without = make_key(name="without", scopes=[s for s in ALL_SCOPES.scopes if s not in needed])
    with_it = make_key(name="with", scopes=needed[-1])
    kwargs: dict[str, Any] = {}
    if body is not None:
        kwargs = {"data": json.dumps(body), "content_type": "application/json"}

    refused = getattr(client, method)(path, **kwargs, **key_headers(without.token))
    allowed = getattr(client, method)(path, **kwargs, **key_headers(with_it.token))

    assert refused.status_code == 403
    assert allowed.status_code not in (401, 403), allowed.content


def _operations() -> list[tuple[str, str, Any]]:
    found = []
    for bound in api._get_bound_routers():  # the routers as mounted, auth inherited
        prefix = bound.prefix
        for path, view in bound.path_operations.items():
            for operation in view.operations:
                for method in operation.methods:
                    found.append((method, f"{prefix}{path}", operation.auth_callbacks))
    return found


def test_every_operation_declares_its_scope_or_is_one_of_the_public_ones() -> None:
    public = {("GET", "/"), ("GET", "/health")}
    undeclared = []
    for method, path, callbacks in _operations():
        if (method, path) in public:
            assert callbacks == [], f"{method} {path} should be public"
            continue
        auth = [c for c in callbacks if isinstance(c, ApiKeyAuth)]
        if not auth or auth[0] is ALL_SCOPES:
            undeclared.append(f"{method} {path}")
    assert undeclared == []

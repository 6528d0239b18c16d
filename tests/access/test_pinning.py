"""A key pinned to components acts only as them: messaging, contexts and budget usage."""

import json
from typing import Any

import pytest
from django.test import Client, override_settings

from budget.models import UsageRecord
from contexts.models import Context
from contexts.services import context_create
from tests.access.conftest import key_headers, make_key

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("remote")]


@pytest.fixture
def remote() -> Any:
    with override_settings(RHETOR_HOST="0.0.0.0", RHETOR_REQUIRE_AUTH=None):  # noqa: S104
        yield


@pytest.fixture
def ergon() -> dict[str, str]:
    created = make_key(
        name="ergon",
        scopes="messages,budget:read,prompts:read,prompts:write",
        components="ergon",
    )
    return key_headers(created.token)


def post(client: Client, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    return client.post(path, json.dumps(body), content_type="application/json", **headers)


@pytest.mark.parametrize(
    ("_case", "body", "detail"),
    [
        ("explicit component", {"message": "hi", "component": "telos"}, {"component": "telos"}),
        (
            "context prefix",
            {"message": "hi", "context_id": "telos:plans"},
            {"context": "telos:plans"},
        ),
        (
            "prefix and component",
            {"message": "hi", "context_id": "telos:x", "component": "ergon"},
            {"context": "telos:x"},
        ),
    ],
)
def test_a_pinned_key_cannot_act_as_another_component(
    client: Client, ergon: dict[str, str], _case: str, body: dict[str, Any], detail: Any
) -> None:
    response = post(client, "/message", body, ergon)

    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert detail.items() <= response.json().items()
    assert not Context.objects.exists()
    assert not UsageRecord.objects.exists()


def test_without_a_component_the_keys_component_is_used(
    client: Client, ergon: dict[str, str]
) -> None:
    response = post(client, "/message", {"message": "hi", "context_id": "scratch"}, ergon)

    assert response.status_code == 200, response.content
    assert Context.objects.get(context_id="scratch").component == "ergon"
    assert set(UsageRecord.objects.values_list("component", flat=True)) == {"ergon"}


def test_its_own_prefixed_context_is_allowed(client: Client, ergon: dict[str, str]) -> None:
    response = post(client, "/message", {"message": "hi", "context_id": "ergon:x"}, ergon)

    assert response.status_code == 200
    assert Context.objects.get(context_id="ergon:x").component == "ergon"


def test_an_unprefixed_context_of_another_component_is_forbidden(
    client: Client, ergon: dict[str, str]
) -> None:
    context_create(context_id="shared", component="telos")

    response = post(client, "/message", {"message": "hi", "context_id": "shared"}, ergon)

    assert response.status_code == 403
    assert Context.objects.get(context_id="shared").message_count == 0


def test_the_stream_is_pinned_too(client: Client, ergon: dict[str, str]) -> None:
    response = post(client, "/stream", {"message": "hi", "component": "telos"}, ergon)

    assert response.status_code == 403


def test_it_lists_and_reads_only_its_contexts(client: Client, ergon: dict[str, str]) -> None:
    context_create(context_id="ergon:a", component="ergon")
    context_create(context_id="telos:b", component="telos")
    context_create(context_id="loose", component="telos")

    listed = client.get("/contexts", **ergon)
    other = client.get("/contexts?component=telos", **ergon)
    read = client.get("/contexts/telos:b", **ergon)
    read_loose = client.get("/contexts/loose", **ergon)
    deleted = client.delete("/contexts/telos:b", **ergon)
    own = client.get("/contexts/ergon:a", **ergon)

    assert [c["id"] for c in listed.json()["contexts"]] == ["ergon:a"]
    assert listed.json()["count"] == 1
    assert other.status_code == 403
    assert read.status_code == 403
    assert read_loose.status_code == 403
    assert deleted.status_code == 403
    assert Context.objects.filter(context_id="telos:b").exists()
    assert own.status_code == 200


def test_contexts_admin_lifts_the_pin_for_contexts(client: Client) -> None:
    admin = key_headers(make_key(scopes="contexts:admin", components="ergon").token)
    context_create(context_id="telos:b", component="telos")

    assert client.get("/contexts/telos:b", **admin).status_code == 200
    assert client.get("/contexts", **admin).json()["count"] == 1


def test_it_reads_only_its_components_usage(client: Client, ergon: dict[str, str]) -> None:
    anyone = key_headers(make_key(name="ops", scopes="messages,budget:read").token)
    post(client, "/message", {"message": "hi", "context_id": "ergon:u"}, ergon)
    post(client, "/message", {"message": "hi", "context_id": "telos:u"}, anyone)
    assert set(UsageRecord.objects.values_list("component", flat=True)) == {"ergon", "telos"}

    own = client.get("/budget/usage", **ergon)
    other = client.get("/budget/usage?component=telos", **ergon)
    summary = client.get("/budget/summary?group_by=component", **ergon)
    everything = client.get("/budget/usage", **anyone)

    assert {u["component"] for u in own.json()["usage"]} == {"ergon"}
    assert other.status_code == 403
    assert summary.status_code == 403
    assert {u["component"] for u in everything.json()["usage"]} == {"ergon", "telos"}


def test_it_cannot_create_another_components_prompt(client: Client, ergon: dict[str, str]) -> None:
    body = {"name": "Telos planner", "component": "telos", "content": "You plan."}

    response = post(client, "/prompts", body, ergon)

    assert response.status_code == 403
    own = post(client, "/prompts", {**body, "name": "Ergon planner", "component": "ergon"}, ergon)
    assert own.status_code == 201


def test_the_openai_endpoint_is_pinned_and_answers_in_openais_shape(
    client: Client, ergon: dict[str, str]
) -> None:
    body = {"model": "rhetor/chat", "messages": [{"role": "user", "content": "hi"}]}
    token = ergon["HTTP_X_API_KEY"]

    other = client.post(
        "/v1/chat/completions",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_X_RHETOR_COMPONENT="telos",
    )
    own = client.post(
        "/v1/chat/completions",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    no_key = client.post("/v1/chat/completions", json.dumps(body), content_type="application/json")

    assert other.status_code == 403
    assert other.json()["error"]["code"] == "forbidden"
    assert own.status_code == 200, own.content
    assert set(UsageRecord.objects.values_list("component", flat=True)) == {"ergon"}
    assert no_key.status_code == 401
    assert no_key.json()["error"]["code"] == "unauthorized"


def test_it_cannot_change_another_components_prompt(client: Client, ergon: dict[str, str]) -> None:
    from prompts.models import Prompt

    telos = Prompt.objects.get(slug="telos_default")
    versions = telos.versions.count()

    update = client.put(
        "/prompts/telos_default",
        json.dumps({"content": "You are someone else now."}),
        content_type="application/json",
        **ergon,
    )
    delete = client.delete("/prompts/telos_default", **ergon)
    rollback = client.post(
        "/prompts/telos_default/rollback", "{}", content_type="application/json", **ergon
    )
    own = client.put(
        "/prompts/ergon_default",
        json.dumps({"content": "You are Ergon, tersely."}),
        content_type="application/json",
        **ergon,
    )

    assert (update.status_code, delete.status_code, rollback.status_code) == (403, 403, 403)
    assert telos.versions.count() == versions
    assert own.status_code == 200

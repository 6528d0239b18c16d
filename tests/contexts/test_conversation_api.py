"""The conversation endpoints the Python clients use: create a context, add a message
without asking a model, analyse a conversation."""

from urllib.parse import quote

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.test import Client

from contexts.models import Context, Message
from contexts.services import context_group
from tests.contexts.conftest import add_turns


@pytest.fixture
def client() -> Client:
    return Client()


def url(context_id: str, suffix: str = "") -> str:
    return f"/contexts/{quote(context_id, safe='')}{suffix}"


def post(client: Client, path: str, body: dict[str, object]):  # type: ignore[no-untyped-def]
    return client.post(path, body, content_type="application/json")


def test_create_with_an_id_makes_an_empty_context(db: None, client: Client) -> None:
    response = post(client, "/contexts", {"context_id": "ergon:plan", "metadata": {"k": 1}})

    assert response.status_code == 201
    body = response.json()
    assert body["id"] == "ergon:plan"
    assert body["total_messages"] == 0
    assert body["metadata"] == {"k": 1, "component": "ergon"}
    assert Context.objects.get(context_id="ergon:plan").component == "ergon"


def test_create_without_an_id_names_it_after_component_and_name(db: None, client: Client) -> None:
    first = post(client, "/contexts", {"name": "Release Planning!", "component": "ergon"}).json()
    second = post(client, "/contexts", {"name": "Release Planning!", "component": "ergon"}).json()

    assert first["id"].startswith("ergon:release-planning-")
    assert first["id"] != second["id"]
    assert first["metadata"]["name"] == "Release Planning!"
    assert Context.objects.count() == 2


def test_create_an_existing_id_is_a_409_and_keeps_it(db: None, client: Client) -> None:
    add_turns("ergon:plan", [("user", "hi")])

    response = post(client, "/contexts", {"contextId": "ergon:plan", "component": "other"})

    assert response.status_code == 409
    assert response.json()["code"] == "context_exists"
    assert Context.objects.get().component == "ergon"
    assert Message.objects.count() == 1


def test_create_refuses_unknown_fields(db: None, client: Client) -> None:
    response = post(client, "/contexts", {"context_id": "a", "colour": "red"})

    assert response.status_code == 422
    assert not Context.objects.exists()


def test_add_message_appends_without_asking_a_model(db: None, client: Client) -> None:
    post(client, "/contexts", {"context_id": "ergon:notes"})

    response = post(
        client,
        url("ergon:notes", "/messages"),
        {"role": "assistant", "content": "Noted.", "metadata": {"sender": "ergon"}},
    )

    assert response.status_code == 201
    body = response.json()
    assert body["context_id"] == "ergon:notes"
    assert body["message"]["id"] == 0
    assert body["message"]["role"] == "assistant"
    assert body["message"]["metadata"]["sender"] == "ergon"
    stored = Message.objects.get()
    assert (stored.role, stored.content, stored.provider) == ("assistant", "Noted.", "")
    assert Context.objects.get().message_count == 1


def test_add_message_to_an_unknown_context_is_a_404_and_creates_nothing(
    db: None, client: Client
) -> None:
    response = post(client, url("ergon:typo", "/messages"), {"content": "hello"})

    assert response.status_code == 404
    assert response.json()["code"] == "context_not_found"
    assert not Context.objects.exists()
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("_case", "body"),
    [("empty content", {"content": ""}), ("bad role", {"role": "tool", "content": "x"})],
)
def test_add_message_rejects_bad_input(db: None, client: Client, _case: str, body: dict) -> None:
    post(client, "/contexts", {"context_id": "c"})

    response = post(client, url("c", "/messages"), body)

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert not Message.objects.exists()


def test_add_message_is_pushed_to_the_contexts_subscribers(db: None, client: Client) -> None:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(context_group("ergon:live"), channel)
    post(client, "/contexts", {"context_id": "ergon:live"})

    post(client, url("ergon:live", "/messages"), {"content": "ping"})
    event = async_to_sync(layer.receive)(channel)

    assert event["type"] == "context.messages"
    assert [(m["role"], m["content"]) for m in event["messages"]] == [("user", "ping")]


def test_analyze_counts_roles_tokens_and_answering_models(db: None, client: Client) -> None:
    add_turns("ergon:a", [("user", "one two"), ("assistant", "three")], tokens=10)
    Message.objects.filter(role="assistant").update(provider="simulated", model="sim")
    add_turns("ergon:a", [("user", "again")], tokens=4)

    response = post(client, url("ergon:a", "/analyze"), {})

    assert response.status_code == 200
    body = response.json()
    assert body["total_messages"] == 3
    assert body["roles"] == {
        "assistant": {"messages": 1, "tokens": 10},
        "user": {"messages": 2, "tokens": 14},
    }
    assert body["total_tokens"] == 24
    assert body["average_tokens_per_message"] == 8.0
    assert body["providers"] == {"simulated/sim": 1}
    assert body["duration_seconds"] >= 0
    assert body["truncated_messages"] == 0


def test_analyze_an_empty_and_an_unknown_context(db: None, client: Client) -> None:
    post(client, "/contexts", {"context_id": "empty"})

    empty = post(client, url("empty", "/analyze"), {}).json()
    unknown = post(client, url("nobody", "/analyze"), {})

    assert empty["total_messages"] == 0
    assert empty["average_tokens_per_message"] == 0.0
    assert empty["first_message_at"] is None
    assert unknown.status_code == 404


def test_a_context_whose_id_ends_in_messages_is_still_readable(db: None, client: Client) -> None:
    add_turns("odd/messages", [("user", "hi")])

    response = client.get(url("odd/messages").replace("%2F", "/"))

    assert response.status_code == 200
    assert response.json()["context_id"] == "odd/messages"


@pytest.mark.parametrize(
    ("_case", "path", "body"),
    [
        ("id", "/contexts", {"context_id": "a\x00b"}),
        ("metadata", "/contexts", {"context_id": "a", "metadata": {"k": ["x\x00"]}}),
        ("content", "/contexts/c/messages", {"content": "x\x00y"}),
    ],
)
def test_nul_characters_are_refused_before_the_database(
    db: None, client: Client, _case: str, path: str, body: dict
) -> None:
    response = post(client, path, body)

    assert response.status_code == 422
    assert "NUL" in response.json()["error"]
    assert not Message.objects.exists()

"""The context API (TEKTON_CONTRACT.md, "Contexts")."""

import json
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client, TestCase
from django.utils import timezone

from contexts.models import Context, ContextSummary, Message
from contexts.services import context_archive_overflow
from tests.contexts.conftest import add_turns, conversation


@pytest.fixture
def client() -> Client:
    return Client()


def url(context_id: str, suffix: str = "") -> str:
    return f"/contexts/{quote(context_id, safe='')}{suffix}"


def test_list_is_newest_first_and_paginated(db: None, client: Client) -> None:
    for i in range(5):
        add_turns(f"ergon:{i}", [("user", f"hello {i}")])
        Context.objects.filter(context_id=f"ergon:{i}").update(
            updated_at=timezone.now() - timedelta(minutes=10 - i)
        )

    first = client.get("/contexts?limit=2").json()
    second = client.get("/contexts?limit=2&offset=4").json()

    assert first["count"] == 5
    assert [c["id"] for c in first["contexts"]] == ["ergon:4", "ergon:3"]
    assert first["next_offset"] == 2
    assert [c["id"] for c in second["contexts"]] == ["ergon:0"]
    assert second["next_offset"] is None


def test_list_entry_has_the_contract_fields(db: None, client: Client) -> None:
    add_turns("ergon:a", conversation(6), tokens=50)
    context_archive_overflow(context_id="ergon:a", keep_tokens=2 * 54, low_water=1.0)

    entry = client.get("/contexts").json()["contexts"][0]

    summary = ContextSummary.objects.get()
    assert entry["id"] == "ergon:a"
    assert entry["active_message_count"] == 2
    assert entry["archived_message_count"] == 4
    assert entry["total_messages"] == 6
    assert entry["summary_count"] == 1
    assert entry["latest_summary"] == summary.content
    assert entry["token_count"] == 100
    assert entry["metadata"] == {"component": "ergon"}
    assert entry["created_at"].endswith("Z")


def test_list_filters_by_component(db: None, client: Client) -> None:
    add_turns("ergon:a", [("user", "x")])
    add_turns("telos:a", [("user", "x")])

    body = client.get("/contexts?component=telos").json()

    assert [c["id"] for c in body["contexts"]] == ["telos:a"]


def test_list_rejects_a_bad_limit(db: None, client: Client) -> None:
    response = client.get("/contexts?limit=0")

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


@pytest.mark.parametrize("context_id", ["ergon:default", "a/b/c", "with spaces", "../etc/passwd"])
def test_get_returns_the_latest_messages_of_any_id(
    db: None, client: Client, context_id: str
) -> None:
    add_turns(context_id, conversation(30))

    body = client.get(url(context_id) + "?limit=3").json()

    assert body["context_id"] == context_id
    assert body["count"] == 3
    assert [m["id"] for m in body["messages"]] == [27, 28, 29]
    assert set(body["messages"][0]) == {"id", "role", "content", "timestamp"}


def test_get_with_metadata(db: None, client: Client) -> None:
    add_turns("ergon:a", [("user", "hello")])

    message = client.get(url("ergon:a") + "?include_metadata=true").json()["messages"][0]

    assert message["metadata"] == {
        "tokens": 1,
        "provider": "",
        "model": "",
        "archived": False,
    }


def test_get_unknown_context_is_404_and_creates_nothing(db: None, client: Client) -> None:
    response = client.get(url("nobody:here"))

    assert response.status_code == 404
    assert response.json()["code"] == "context_not_found"
    assert Context.objects.exists() is False


def test_delete(db: None, client: Client) -> None:
    add_turns("a/b", conversation(4))
    add_turns("other", [("user", "stay")])

    response = client.delete(url("a/b"))

    assert response.status_code == 200
    assert response.json() == {"success": True, "context_id": "a/b"}
    assert list(Context.objects.values_list("context_id", flat=True)) == ["other"]
    assert Message.objects.count() == 1


def test_delete_unknown_is_404(db: None, client: Client) -> None:
    add_turns("other", [("user", "stay")])

    response = client.delete(url("nobody"))

    assert response.status_code == 404
    assert Message.objects.count() == 1


SEARCH_TURNS = [
    ("user", "How do I configure the PostgreSQL connection pool?"),
    ("assistant", "Set the options in DATABASES; PostgreSQL handles the rest."),
    ("user", "And Redis?"),
    ("assistant", "Redis is configured with REDIS_URL."),
    ("user", "Thanks, the weather is nice today."),
]


def test_search_ranks_by_relevance_with_scores(db: None, client: Client) -> None:
    add_turns("ergon:s", SEARCH_TURNS)
    add_turns("other", [("user", "PostgreSQL pool PostgreSQL pool")])

    body = client.post(url("ergon:s", "/search") + "?query=postgresql+pool&limit=5").json()

    assert body["context_id"] == "ergon:s"
    assert body["query"] == "postgresql pool"
    assert [r["message"]["id"] for r in body["results"]] == [0, 1]
    assert body["count"] == 2
    assert body["results"][0]["score"] >= body["results"][1]["score"] > 0
    assert body["results"][0]["message"]["content"] == SEARCH_TURNS[0][1]


def test_search_takes_the_query_from_a_json_body_and_respects_the_limit(
    db: None, client: Client
) -> None:
    add_turns("ergon:s", SEARCH_TURNS)

    response = client.post(
        url("ergon:s", "/search"),
        json.dumps({"query": "redis postgresql", "limit": 2}),
        content_type="application/json",
    )

    assert response.status_code == 200
    assert response.json()["count"] == 2


def test_search_finds_archived_messages_too(db: None, client: Client) -> None:
    add_turns("ergon:s", SEARCH_TURNS, tokens=20)
    add_turns("ergon:s", conversation(10), tokens=20)
    context_archive_overflow(context_id="ergon:s", keep_tokens=48, low_water=1.0)

    body = client.post(url("ergon:s", "/search") + "?query=weather").json()

    assert [r["message"]["id"] for r in body["results"]] == [4]
    assert body["results"][0]["message"]["metadata"]["archived"] is True


def test_search_ignores_query_syntax(db: None, client: Client) -> None:
    add_turns("ergon:s", SEARCH_TURNS)

    response = client.post(url("ergon:s", "/search") + '?query=redis" OR NEAR(*')

    assert response.status_code == 200
    assert [r["message"]["id"] for r in response.json()["results"]] == [3, 2]


def test_search_without_a_query_is_422(db: None, client: Client) -> None:
    add_turns("ergon:s", SEARCH_TURNS)

    response = client.post(url("ergon:s", "/search"))

    assert response.status_code == 422
    assert response.json()["field"] == "query"


def test_search_with_a_body_that_is_not_json_is_400_invalid_json(db: None, client: Client) -> None:
    add_turns("ergon:s", SEARCH_TURNS)

    response = client.post(url("ergon:s", "/search"), "{query", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert response.json()["error"].startswith("The request body is not valid JSON")


def test_search_with_a_json_body_of_the_wrong_shape_is_422(db: None, client: Client) -> None:
    add_turns("ergon:s", SEARCH_TURNS)

    response = client.post(url("ergon:s", "/search"), "[1]", content_type="application/json")

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


def test_the_search_body_and_a_stored_message_are_documented(client: Client) -> None:
    document = client.get("/openapi.json").json()
    search = document["paths"]["/contexts/{context_id}/search"]["post"]
    schemas = document["components"]["schemas"]

    assert set(search["requestBody"]["content"]["application/json"]["schema"]["properties"]) == {
        "query",
        "limit",
    }
    assert search["requestBody"]["required"] is False
    assert set(schemas["StoredMessageOut"]["properties"]) == {
        "id",
        "role",
        "content",
        "timestamp",
        "metadata",
    }


def test_search_of_an_unknown_context_is_404(db: None, client: Client) -> None:
    response = client.post(url("nobody", "/search") + "?query=x")

    assert response.status_code == 404
    assert Context.objects.exists() is False


def test_search_on_a_context_whose_id_ends_in_search(db: None, client: Client) -> None:
    add_turns("x/search", [("user", "needle")])

    assert client.get(url("x/search")).json()["count"] == 1
    body = client.post(url("x/search", "/search") + "?query=needle").json()
    assert body["count"] == 1
    assert client.delete(url("x/search")).status_code == 200
    assert Context.objects.exists() is False


class SummarizeTests(TestCase):
    async def test_summarize_returns_and_keeps_a_summary(self) -> None:
        from asgiref.sync import sync_to_async

        await sync_to_async(add_turns)("ergon:z", conversation(4))

        response = await self.async_client.post(url("ergon:z", "/summarize") + "?max_tokens=150")

        assert response.status_code == 200
        body = response.json()
        assert body["context_id"] == "ergon:z"
        assert body["summary"].startswith("Summary of the earlier conversation")
        assert "- user: turn 0" in body["summary"]
        stored = await ContextSummary.objects.aget()
        assert (stored.kind, stored.content) == ("on_demand", body["summary"])

    async def test_summarize_unknown_is_404(self) -> None:
        response: Any = await self.async_client.post(url("nobody", "/summarize"))

        assert response.status_code == 404
        assert await Context.objects.aexists() is False

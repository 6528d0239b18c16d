"""RhetorCommunicationClient against a live Rhetor (a daphne subprocess, real HTTP),
including a streamed reply."""

import uuid

import httpx
import pytest

from rhetor.client import (
    Conflict,
    InvalidRequest,
    NotFound,
    RhetorCommunicationClient,
    get_rhetor_communication_client,
)


def conversation_name() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


async def test_create_add_get_and_analyze_a_conversation(live_url: str) -> None:
    async with RhetorCommunicationClient(live_url) as client:
        created = await client.create_conversation(
            name="Release planning", metadata={"ticket": 7}, component="ergon"
        )
        cid = created["conversation_id"]
        first = await client.add_message(cid, "What ships on Friday?", sender="ergon")
        second = await client.add_message(cid, "The client library.", sender="assistant")
        conversation = await client.get_conversation(cid)
        stats = await client.analyze_conversation(cid)

    assert cid.startswith("ergon:release-planning-")
    assert created["metadata"] == {"ticket": 7, "component": "ergon", "name": "Release planning"}
    assert (first["message_id"], first["role"]) == (0, "user")
    assert first["metadata"]["sender"] == "ergon"
    assert (second["message_id"], second["role"]) == (1, "assistant")
    assert [(m["role"], m["content"]) for m in conversation["messages"]] == [
        ("user", "What ships on Friday?"),
        ("assistant", "The client library."),
    ]
    assert conversation["conversation_id"] == cid
    assert stats["analysis_type"] == "stats"
    assert stats["analysis"]["total_messages"] == 2
    assert set(stats["analysis"]["roles"]) == {"user", "assistant"}
    assert stats["analysis"]["component"] == "ergon"


async def test_send_message_answers_and_stores_the_exchange(live_url: str) -> None:
    cid = f"ergon:{conversation_name()}"
    async with RhetorCommunicationClient(live_url) as client:
        reply = await client.send_message("Hello there", cid, task_type="chat")
        conversation = await client.get_conversation(cid)
        analysis = await client.analyze_conversation(cid, "summary", max_tokens=60)
        found = await client.analyze_conversation(cid, "search", query="Hello")

    assert reply["provider"] == "simulated"
    assert reply["context"] == cid
    assert reply["finished"] is True
    assert reply["message"]
    assert [m["role"] for m in conversation["messages"]] == ["user", "assistant"]
    assert conversation["messages"][1]["content"] == reply["message"]
    assert analysis["analysis"]["providers"] == {f"simulated/{reply['model']}": 1}
    assert analysis["analysis"]["summary"]
    assert found["analysis"]["search"]["results"][0]["message"]["content"] == "Hello there"


async def test_streamed_reply_arrives_in_chunks_and_ends_with_usage(live_url: str) -> None:
    cid = f"ergon:{conversation_name()}"
    async with RhetorCommunicationClient(live_url) as client:
        async with client.stream_message("Tell me a long story", cid) as reply:
            chunks = [chunk async for chunk in reply]
        stored = await client.get_conversation(cid)

    assert len(chunks) > 1
    assert reply.done is True
    assert reply.provider == "simulated"
    assert reply.text == "".join(chunks)
    assert reply.usage is not None
    assert reply.usage["output_tokens"] > 0
    assert stored["messages"][-1]["content"] == reply.text


async def test_stream_can_be_iterated_without_a_with_block(live_url: str) -> None:
    async with RhetorCommunicationClient(live_url) as client:
        chunks = [c async for c in client.stream_message("Hi", f"x:{conversation_name()}")]

    assert "".join(chunks)


async def test_refusals_before_the_stream_raise_the_typed_error(live_url: str) -> None:
    async with RhetorCommunicationClient(live_url) as client:
        with pytest.raises(NotFound) as missing:
            async with client.stream_message("Hi", "x:y", prompt_id="no_such_prompt") as reply:
                _ = [c async for c in reply]
        with pytest.raises(InvalidRequest) as invalid:
            await client.send_message("Hi", "x:y", options={"provider": "nonexistent"})

    assert missing.value.code == "prompt_not_found"
    assert missing.value.status == 404
    assert invalid.value.status in (400, 422)
    assert invalid.value.error


async def test_conversation_errors_carry_the_servers_code(live_url: str) -> None:
    async with RhetorCommunicationClient(live_url) as client:
        created = await client.create_conversation(name="dup")
        with pytest.raises(Conflict) as duplicate:
            await client.create_conversation(conversation_id=created["conversation_id"])
        with pytest.raises(NotFound) as unknown:
            await client.add_message("nobody:here", "hello")
        with pytest.raises(InvalidRequest):
            await client.analyze_conversation(created["conversation_id"], "search")

    assert duplicate.value.code == "context_exists"
    assert unknown.value.code == "context_not_found"
    assert created["conversation_id"].startswith("rhetor:dup-")


async def test_list_and_delete_conversations(live_url: str) -> None:
    component = f"c{uuid.uuid4().hex[:6]}"
    async with RhetorCommunicationClient(live_url) as client:
        created = await client.create_conversation(name="one", component=component)
        listed = await client.list_conversations(component=component)
        deleted = await client.delete_conversation(created["conversation_id"])
        after = await client.list_conversations(component=component)

    assert [c["id"] for c in listed] == [created["conversation_id"]]
    assert deleted is True
    assert after == []


async def test_factory_uses_rhetor_url_and_the_client_closes(
    live_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RHETOR_URL", live_url)

    client = await get_rhetor_communication_client()
    async with client:
        reply = await client.send_message("ping", f"x:{conversation_name()}")

    assert reply["provider"] == "simulated"
    assert client.closed
    with pytest.raises(RuntimeError):
        await client.http.get("/health")


async def test_a_shared_httpx_client_is_used_unchanged_and_left_open(live_url: str) -> None:
    async with httpx.AsyncClient(base_url=live_url) as http:
        async with RhetorCommunicationClient(live_url, http_client=http, api_key="k") as client:
            await client.list_conversations()
        still_open = await http.get("/health")

    assert still_open.status_code == 200
    assert "Authorization" not in http.headers


async def test_the_readme_example_runs(live_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RHETOR_URL", live_url)
    streamed: list[str] = []

    async with await get_rhetor_communication_client() as chat:
        conversation = await chat.create_conversation(name="planning", component="ergon")
        cid = conversation["conversation_id"]
        reply = await chat.send_message("What ships on Friday?", cid, task_type="chat")
        async with chat.stream_message("And after that?", cid) as stream:
            async for chunk in stream:
                streamed.append(chunk)
        analysis = await chat.analyze_conversation(cid, "summary")

    assert reply["message"]
    assert "".join(streamed) == stream.text
    assert analysis["analysis"]["total_messages"] == 4
    assert analysis["analysis"]["summary"]

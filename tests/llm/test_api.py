"""The messaging API with the simulated provider (the default run: no API keys)."""

import json
import re
from typing import Any

from django.db import OperationalError
from django.test import TestCase, override_settings

from contexts.models import Context, Message
from llm.models import DefaultModel

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
RESPONSE_KEYS = {
    "message",
    "model",
    "provider",
    "context",
    "finished",
    "timestamp",
    "usage",
    "fallback",
    "budget_warnings",
}


def sse_events(body: bytes) -> list[dict[str, Any]]:
    frames = [f for f in body.decode().split("\n\n") if f.strip()]
    events = []
    for frame in frames:
        assert frame.startswith("data: "), frame
        events.append(json.loads(frame[len("data: ") :]))
    return events


class MessageTests(TestCase):
    async def post(self, path: str, body: Any) -> Any:
        return await self.async_client.post(path, json.dumps(body), content_type="application/json")

    async def test_message_answers_in_the_standardized_format(self) -> None:
        response = await self.post("/message", {"message": "Hello", "context_id": "ergon:default"})

        assert response.status_code == 200
        body = response.json()
        assert set(body) == RESPONSE_KEYS
        assert body["provider"] == "simulated"
        assert body["model"] == "simulated-standard"
        assert body["context"] == "ergon:default"
        assert body["finished"] is True
        assert body["fallback"] is False
        assert body["budget_warnings"] == []
        assert TIMESTAMP.match(body["timestamp"])
        assert body["message"].startswith("[Simulated response from simulated-standard]")
        assert 'You said: "Hello"' in body["message"]
        assert body["usage"]["input_tokens"] > 0
        assert body["usage"]["output_tokens"] > 0

    async def test_message_stores_the_exchange_and_sends_history_next_time(self) -> None:
        await self.post("/message", {"message": "First question", "context_id": "ergon:x"})
        second = await self.post("/message", {"message": "Second question", "contextId": "ergon:x"})

        # The simulated model reports how many turns it was sent: two stored + the new one.
        assert "I can see 3 messages" in second.json()["message"]
        context = await Context.objects.aget(context_id="ergon:x")
        assert context.component == "ergon"
        rows = [(m.seq, m.role, m.content) async for m in Message.objects.filter(context=context)]
        assert [(seq, role) for seq, role, _ in rows] == [
            (0, "user"),
            (1, "assistant"),
            (2, "user"),
            (3, "assistant"),
        ]
        assert rows[0][2] == "First question"
        assert rows[2][2] == "Second question"
        assert rows[3][2] == second.json()["message"]

    async def test_stream_sends_chunks_then_a_separate_terminal_event(self) -> None:
        response = await self.post("/stream", {"message": "Stream please", "context_id": "s"})

        assert response.status_code == 200
        assert response["Content-Type"] == "text/event-stream"
        events = sse_events(b"".join([c async for c in response.streaming_content]))
        chunks, last = events[:-1], events[-1]
        assert len(chunks) > 5
        assert all(e["done"] is False and e["chunk"] for e in chunks)
        assert all(e["provider"] == "simulated" and e["context"] == "s" for e in events)
        assert last["done"] is True
        assert last["chunk"] == ""
        assert "error" not in last
        assert last["usage"]["output_tokens"] > 0
        text = "".join(e["chunk"] for e in chunks)
        stored = await Message.objects.filter(context__context_id="s", role="assistant").aget()
        assert stored.content == text

    async def test_message_with_streaming_true_answers_with_sse(self) -> None:
        response = await self.post("/message", {"message": "Hi", "streaming": True})

        assert response["Content-Type"] == "text/event-stream"
        events = sse_events(b"".join([c async for c in response.streaming_content]))
        assert events[-1]["done"] is True

    async def test_chat_sends_the_conversation_and_stores_only_new_turns(self) -> None:
        conversation = [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "One"},
        ]
        first = await self.post("/chat", {"messages": conversation, "context_id": "c"})
        reply = first.json()["message"]
        assert "and a system prompt" in reply
        conversation += [
            {"role": "assistant", "content": reply},
            {"role": "user", "content": "Two"},
        ]

        second = await self.post("/chat", {"messages": conversation, "context_id": "c"})

        assert second.status_code == 200
        assert "I can see 3 messages" in second.json()["message"]
        roles = [m.role async for m in Message.objects.filter(context__context_id="c")]
        assert roles == ["system", "user", "assistant", "user", "assistant"]

    async def test_chat_streaming_answers_with_sse(self) -> None:
        response = await self.post(
            "/chat", {"messages": [{"role": "user", "content": "Hi"}], "streaming": True}
        )
        events = sse_events(b"".join([c async for c in response.streaming_content]))
        assert events[-1]["done"] is True

    @override_settings(RHETOR_SIMULATED_DELAY=0.0)
    async def test_component_route_from_the_context_prefix(self) -> None:
        config = {"ergon": {"provider": "simulated", "model": "simulated-fast"}}
        with _task_config(config):
            by_prefix = await self.post("/message", {"message": "x", "context_id": "ergon:a"})
            explicit = await self.post(
                "/message", {"message": "x", "context_id": "ergon:a", "component": "telos"}
            )

        assert by_prefix.json()["model"] == "simulated-fast"
        assert explicit.json()["model"] == "simulated-standard"


class _task_config:
    """Point RHETOR_TASK_CONFIG at a temporary JSON file."""

    def __init__(self, data: dict[str, Any]) -> None:
        import tempfile

        self.file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
        json.dump(data, self.file)
        self.file.close()
        self.override = override_settings(RHETOR_TASK_CONFIG=self.file.name)

    def __enter__(self) -> None:
        self.override.enable()

    def __exit__(self, *exc: object) -> None:
        self.override.disable()


class BadInputTests(TestCase):
    async def post(self, path: str, body: Any) -> Any:
        return await self.async_client.post(
            path,
            json.dumps(body) if not isinstance(body, str) else body,
            content_type="application/json",
        )

    async def assert_error(self, response: Any, status: int, code: str, mentions: str) -> None:
        assert response.status_code == status, response.content
        body = response.json()
        assert body["code"] == code
        assert mentions in body["error"]
        assert await Message.objects.aexists() is False

    async def test_missing_message_is_a_422_naming_the_field(self) -> None:
        response = await self.post("/message", {"context_id": "x"})
        await self.assert_error(response, 422, "validation_error", "message")
        assert response.json()["fields"][0]["field"] == "message"

    async def test_blank_message_is_refused(self) -> None:
        await self.assert_error(
            await self.post("/message", {"message": "   "}), 422, "validation_error", "blank"
        )

    async def test_wrong_types_are_422(self) -> None:
        response = await self.post("/message", {"message": "x", "options": {"temperature": "hot"}})
        await self.assert_error(response, 422, "validation_error", "options.temperature")
        response = await self.post("/message", {"message": ["not", "text"]})
        await self.assert_error(response, 422, "validation_error", "message")

    async def test_out_of_range_options_are_422(self) -> None:
        response = await self.post("/message", {"message": "x", "options": {"max_tokens": 0}})
        await self.assert_error(response, 422, "validation_error", "options.max_tokens")

    async def test_unknown_option_is_422(self) -> None:
        response = await self.post("/message", {"message": "x", "options": {"temprature": 1}})
        await self.assert_error(response, 422, "validation_error", "temprature")

    async def test_unknown_task_type_is_422(self) -> None:
        response = await self.post("/message", {"message": "x", "task_type": "poetry"})
        await self.assert_error(response, 422, "unknown_task_type", "poetry")
        assert response.json()["field"] == "task_type"

    async def test_unknown_provider_is_400(self) -> None:
        response = await self.post("/message", {"message": "x", "options": {"provider": "acme"}})
        await self.assert_error(response, 400, "unknown_provider", "acme")

    async def test_unknown_model_is_400(self) -> None:
        response = await self.post(
            "/message", {"message": "x", "options": {"provider": "simulated", "model": "nope"}}
        )
        await self.assert_error(response, 400, "unknown_model", "nope")

    async def test_stream_refuses_bad_input_with_a_status_not_an_event(self) -> None:
        response = await self.post("/stream", {"message": "x", "taskType": "poetry"})
        await self.assert_error(response, 422, "unknown_task_type", "poetry")

    async def test_chat_needs_a_user_message(self) -> None:
        response = await self.post("/chat", {"messages": [{"role": "system", "content": "s"}]})
        await self.assert_error(response, 422, "validation_error", "user message")
        response = await self.post("/chat", {"messages": [{"role": "robot", "content": "s"}]})
        await self.assert_error(response, 422, "validation_error", "role")
        response = await self.post("/chat", {"messages": []})
        await self.assert_error(response, 422, "validation_error", "messages")

    async def test_malformed_json_is_a_clear_4xx(self) -> None:
        response = await self.post("/message", "{not json")
        assert 400 <= response.status_code < 500
        assert response.json()["code"]
        assert await Message.objects.aexists() is False


class ProviderTests(TestCase):
    def test_providers_lists_every_provider_keyed_by_id(self) -> None:
        body = self.client.get("/providers").json()

        assert set(body["providers"]) == {"anthropic", "openai", "ollama", "simulated"}
        assert body["providers"]["simulated"]["available"] is True
        assert body["providers"]["anthropic"]["available"] is False
        assert {"id": "simulated-standard", "name": "Standard Simulation"} in body["providers"][
            "simulated"
        ]["models"]
        assert body["default_provider"] == "simulated"
        assert body["default_model"] == "simulated-standard"

    def test_setting_the_provider_persists_the_choice(self) -> None:
        response = self.client.post(
            "/provider",
            {"provider_id": "simulated", "model_id": "simulated-fast"},
            content_type="application/json",
        )

        assert response.json() == {
            "success": True,
            "provider": "simulated",
            "model": "simulated-fast",
        }
        assert DefaultModel.objects.get().model == "simulated-fast"
        assert self.client.get("/providers").json()["default_model"] == "simulated-fast"
        # Requests that fall to the default route use it.
        reply = self.client.post(
            "/message", {"message": "x"}, content_type="application/json"
        ).json()
        assert reply["model"] == "simulated-fast"

    def test_unknown_provider_or_model_is_400_and_changes_nothing(self) -> None:
        bad_provider = self.client.post(
            "/provider", {"provider_id": "acme"}, content_type="application/json"
        )
        bad_model = self.client.post(
            "/provider",
            {"providerId": "simulated", "modelId": "gpt-9"},
            content_type="application/json",
        )

        assert bad_provider.status_code == 400
        assert bad_provider.json()["code"] == "unknown_provider"
        assert bad_model.status_code == 400
        assert bad_model.json()["code"] == "unknown_model"
        assert "gpt-9" in bad_model.json()["error"]
        assert DefaultModel.objects.exists() is False


class StatusTests(TestCase):
    def test_health_reports_healthy_with_provider_availability(self) -> None:
        response = self.client.get("/health")

        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "healthy"
        assert body["component"] == "rhetor"
        assert body["version"]
        assert body["providers"]["simulated"] is True

    def test_health_is_503_when_the_database_is_unreachable(self) -> None:
        from unittest import mock

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise OperationalError("connection refused")

        with mock.patch("llm.api.connection.cursor", broken):
            response = self.client.get("/health")

        assert response.status_code == 503
        assert response.json()["status"] == "unhealthy"
        assert "database" in response.json()["reason"]

    def test_root_describes_the_service(self) -> None:
        body = self.client.get("/").json()

        assert body["name"] == "Rhetor"
        assert body["status"] == "running"
        assert "POST /message" in body["endpoints"]
        assert body["providers"]["simulated"] is True
        assert body["prompt_count"] == 15  # every Tekton component's default prompt
        assert body["template_count"] == 0
        assert body["budget"]["daily"]["usage"] == "0.00"
        assert body["budget"]["daily"]["limit"] is None

    def test_openapi_docs_are_served(self) -> None:
        assert self.client.get("/docs").status_code == 200
        schema = self.client.get("/openapi.json").json()
        assert "/message" in schema["paths"]
        assert "/stream" in schema["paths"]


class QueryBudgetTests(TestCase):
    async def test_a_message_costs_a_bounded_number_of_queries(self) -> None:
        """Django runs each ASGI request's sync code in its own thread, so the queries are
        counted on every connection, not only on the test thread's."""
        from unittest import mock

        from django.db.backends.utils import CursorWrapper

        executed: list[str] = []
        real_execute = CursorWrapper.execute

        def counting(self: CursorWrapper, sql: str, params: Any = None) -> Any:
            executed.append(sql)
            return real_execute(self, sql, params)

        body = json.dumps({"message": "warm up", "context_id": "ergon:q"})
        await self.async_client.post("/message", body, content_type="application/json")
        with mock.patch.object(CursorWrapper, "execute", counting):
            response = await self.async_client.post(
                "/message", body, content_type="application/json"
            )

        assert response.status_code == 200
        # prompt (1) + history (1) + reserve (~4) + settle (~10) + store (~6) + savepoints.
        assert 10 <= len(executed) <= 40, executed

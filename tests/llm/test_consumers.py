"""The Tekton WebSocket /ws, frame by frame, with the simulated provider."""

import asyncio
import json
from typing import Any

from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import TransactionTestCase, override_settings

from budget.models import UsageRecord
from contexts.models import Message
from rhetor_site.routing import websocket_urlpatterns

FRAME_KEYS = {"type", "source", "target", "timestamp", "payload"}


class ConsumerTestCase(TransactionTestCase):
    """Transactional, as channels' own consumer tests are: the consumer's database work runs
    on threads and connections of its own, which a TestCase's wrapping transaction would
    not let it open (PostgreSQL). serialized_rollback keeps the seeded prompts and prices."""

    serialized_rollback = True

    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        layer = get_channel_layer()
        if hasattr(layer, "flush"):
            await layer.flush()

    async def connect(self) -> WebsocketCommunicator:
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws")
        connected, _ = await communicator.connect()
        assert connected
        return communicator

    async def until(
        self, ws: WebsocketCommunicator, predicate: Any, limit: int = 500
    ) -> list[dict[str, Any]]:
        """Frames up to and including the first that satisfies `predicate`."""
        frames = []
        for _ in range(limit):
            frame = await ws.receive_json_from(timeout=5)
            frames.append(frame)
            if predicate(frame):
                return frames
        raise AssertionError(f"no matching frame in {frames[-5:]}")


def typing_off(frame: dict[str, Any]) -> bool:
    return frame["payload"].get("status") == "typing" and frame["payload"]["isTyping"] is False


class RequestFrameTests(ConsumerTestCase):
    async def test_streaming_request_follows_the_contract_sequence(self) -> None:
        ws = await self.connect()
        await ws.send_json_to(
            {
                "type": "LLM_REQUEST",
                "source": "HEPHAESTUS",
                "req_id": "r1",
                "payload": {"message": "Tell me about Tekton", "context": "ergon"},
            }
        )
        frames = await self.until(ws, typing_off)
        await ws.disconnect()

        assert all(set(f) == FRAME_KEYS | {"req_id"} for f in frames)
        assert all(f["req_id"] == "r1" and f["target"] == "HEPHAESTUS" for f in frames)
        assert all(f["type"] == "UPDATE" and f["source"] == "LLM" for f in frames)
        first, chunks, done, last = frames[0], frames[1:-2], frames[-2], frames[-1]
        assert first["payload"] == {"status": "typing", "isTyping": True, "context": "ergon"}
        assert chunks
        assert all(c["payload"]["done"] is False and c["payload"]["chunk"] for c in chunks)
        assert chunks[0]["payload"]["provider"] == "simulated"
        assert done["payload"]["chunk"] == ""
        assert done["payload"]["done"] is True
        assert done["payload"]["context"] == "ergon"
        assert last["payload"] == {"status": "typing", "isTyping": False, "context": "ergon"}
        text = "".join(c["payload"]["chunk"] for c in chunks)
        reply = await Message.objects.aget(context__context_id="ergon", role="assistant")
        assert reply.content == text

    async def test_non_streaming_request_answers_one_response(self) -> None:
        ws = await self.connect()
        await ws.send_json_to(
            {
                "type": "LLM_REQUEST",
                "source": "UI",
                "payload": {"message": "Hi", "context": "c1", "streaming": False},
            }
        )
        frames = await self.until(ws, typing_off)
        await ws.disconnect()

        assert [f["type"] for f in frames] == ["UPDATE", "RESPONSE", "UPDATE"]
        payload = frames[1]["payload"]
        assert {"message", "model", "provider", "context", "finished", "timestamp"} <= set(payload)
        assert payload["context"] == "c1"
        assert payload["finished"] is True
        assert "req_id" not in frames[1]

    async def test_chat_request_sends_the_conversation(self) -> None:
        ws = await self.connect()
        await ws.send_json_to(
            {
                "type": "CHAT_REQUEST",
                "payload": {
                    "messages": [
                        {"role": "user", "content": "a"},
                        {"role": "assistant", "content": "b"},
                        {"role": "user", "content": "c"},
                    ],
                    "context": "chat1",
                    "streaming": False,
                },
            }
        )
        frames = await self.until(ws, typing_off)
        await ws.disconnect()

        assert "I can see 3 messages" in frames[1]["payload"]["message"]

    async def test_two_requests_on_one_socket_stream_independently(self) -> None:
        ws = await self.connect()
        for rid in ("a", "b"):
            await ws.send_json_to(
                {"type": "LLM_REQUEST", "req_id": rid, "payload": {"message": rid, "context": rid}}
            )
        done: set[str] = set()
        while len(done) < 2:
            frame = await ws.receive_json_from(timeout=5)
            if typing_off(frame):
                done.add(frame["req_id"])
        await ws.disconnect()

        assert done == {"a", "b"}
        assert await Message.objects.filter(context__context_id="a").acount() == 2
        assert await Message.objects.filter(context__context_id="b").acount() == 2


class ErrorFrameTests(ConsumerTestCase):
    async def test_bad_json_answers_an_error_and_keeps_the_socket_open(self) -> None:
        ws = await self.connect()
        await ws.send_to(text_data="{nope")
        error = await ws.receive_json_from()
        await ws.send_json_to({"type": "REGISTER", "payload": {"component_id": "ergon"}})
        registered = await ws.receive_json_from()
        await ws.disconnect()

        assert error["type"] == "ERROR"
        assert error["payload"]["context"] == "unknown"
        assert "Invalid JSON" in error["payload"]["error"]
        assert registered["type"] == "RESPONSE"

    async def test_unknown_type_answers_an_error_with_the_context(self) -> None:
        ws = await self.connect()
        await ws.send_json_to({"type": "DANCE", "payload": {"context": "x"}, "req_id": 7})
        error = await ws.receive_json_from()
        await ws.disconnect()

        assert error["type"] == "ERROR"
        assert error["req_id"] == 7
        assert error["payload"]["context"] == "x"
        assert "DANCE" in error["payload"]["error"]

    async def test_invalid_request_answers_an_error_naming_the_field(self) -> None:
        ws = await self.connect()
        await ws.send_json_to({"type": "LLM_REQUEST", "payload": {"context": "x"}})
        error = await ws.receive_json_from()
        await ws.disconnect()

        assert error["type"] == "ERROR"
        assert "message" in error["payload"]["error"]
        assert await Message.objects.aexists() is False

    async def test_failed_request_answers_error_then_typing_off(self) -> None:
        ws = await self.connect()
        await ws.send_json_to(
            {
                "type": "LLM_REQUEST",
                "payload": {"message": "x", "context": "e", "task_type": "poetry"},
            }
        )
        frames = await self.until(ws, typing_off)
        await ws.disconnect()

        assert [f["type"] for f in frames] == ["UPDATE", "ERROR", "UPDATE"]
        assert frames[1]["payload"]["context"] == "e"
        assert frames[1]["payload"]["code"] == "unknown_task_type"


class ControlFrameTests(ConsumerTestCase):
    async def test_register_acknowledges_ui_and_components(self) -> None:
        ws = await self.connect()
        await ws.send_json_to(
            {
                "type": "REGISTER",
                "source": "HEPHAESTUS",
                "payload": {
                    "clientId": "ui-1",
                    "clientType": "hephaestus",
                    "supportedContexts": [],
                },
            }
        )
        ack = await ws.receive_json_from()
        await ws.disconnect()

        assert ack["type"] == "RESPONSE"
        assert ack["target"] == "HEPHAESTUS"
        assert ack["payload"] == {
            "status": "registered",
            "message": "Client registered successfully with Rhetor LLM Manager",
        }

    async def test_status_reports_service_providers_and_budget(self) -> None:
        ws = await self.connect()
        await ws.send_json_to({"type": "STATUS"})
        status = await ws.receive_json_from()
        await ws.disconnect()

        payload = status["payload"]
        assert status["type"] == "RESPONSE"
        assert payload["status"] == "ok"
        assert payload["service"] == "rhetor"
        assert payload["providers"]["simulated"] is True
        assert payload["default_provider"] == "simulated"
        assert set(payload["budget"]) == {
            "daily_usage",
            "weekly_usage",
            "monthly_usage",
            "daily_limit",
            "weekly_limit",
            "monthly_limit",
            "budget_enabled",
        }

    @override_settings(RHETOR_SIMULATED_DELAY=0.01)
    async def test_closing_the_socket_mid_stream_cancels_and_keeps_the_partial_reply(self) -> None:
        ws = await self.connect()
        await ws.send_json_to(
            {"type": "LLM_REQUEST", "payload": {"message": "long", "context": "cut"}}
        )
        await self.until(ws, lambda f: bool(f["payload"].get("chunk")))
        await ws.disconnect()
        await asyncio.sleep(0.05)

        reply = await Message.objects.aget(context__context_id="cut", role="assistant")
        assert reply.metadata["partial"] is True
        assert reply.metadata["status"] == "cancelled"
        record = await UsageRecord.objects.aget(context_id="cut")
        assert (record.status, record.source) == ("cancelled", "partial")
        assert record.output_tokens > 0


class SubscriptionTests(ConsumerTestCase):
    async def test_subscriber_sees_messages_appended_over_rest(self) -> None:
        ws = await self.connect()
        await ws.send_json_to({"type": "SUBSCRIBE", "payload": {"context": "ergon:live"}})
        ack = await ws.receive_json_from()

        await self.async_client.post(
            "/message",
            json.dumps({"message": "over REST", "context_id": "ergon:live"}),
            content_type="application/json",
        )
        user = await ws.receive_json_from()
        assistant = await ws.receive_json_from()
        await ws.send_json_to({"type": "UNSUBSCRIBE", "payload": {"context": "ergon:live"}})
        unsub = await ws.receive_json_from()
        await self.async_client.post(
            "/message",
            json.dumps({"message": "unseen", "context_id": "ergon:live"}),
            content_type="application/json",
        )
        nothing = await ws.receive_nothing(timeout=0.1)
        await ws.disconnect()

        assert ack["payload"] == {"status": "subscribed", "context": "ergon:live"}
        assert user["type"] == "RESPONSE"
        assert user["payload"]["event"] == "context_message"
        assert (user["payload"]["role"], user["payload"]["message"]) == ("user", "over REST")
        assert assistant["payload"]["role"] == "assistant"
        assert assistant["payload"]["context"] == "ergon:live"
        assert unsub["payload"]["status"] == "unsubscribed"
        assert nothing is True


class OriginTests(ConsumerTestCase):
    async def handshake(self, headers: list[tuple[bytes, bytes]]) -> bool:
        from rhetor_site.asgi import application

        communicator = WebsocketCommunicator(application, "/ws", headers=headers)
        connected, _ = await communicator.connect()
        if connected:
            await communicator.disconnect()
        return bool(connected)

    async def test_browser_pages_from_other_sites_are_refused(self) -> None:
        assert await self.handshake([(b"origin", b"http://evil.example")]) is False

    async def test_own_site_and_non_browser_clients_are_accepted(self) -> None:
        assert await self.handshake([(b"origin", b"http://localhost:8300")]) is True
        assert await self.handshake([]) is True

    @override_settings(RHETOR_CORS_ORIGINS=["http://tekton-ui.example:8080"])
    async def test_configured_ui_origin_is_accepted(self) -> None:
        assert await self.handshake([(b"origin", b"http://tekton-ui.example:8080")]) is True

"""CORS for the configured UI origin only, and the WebSocket's key and scopes."""

from typing import Any

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client, TransactionTestCase, override_settings

from contexts.services import context_create
from llm.routing import websocket_urlpatterns
from tests.access.conftest import make_key

UI = "http://tekton-ui.example:8080"
REMOTE = {"RHETOR_HOST": "0.0.0.0", "RHETOR_REQUIRE_AUTH": None}  # noqa: S104


@pytest.mark.django_db
class TestCors:
    @pytest.fixture(autouse=True)
    def _ui_origin(self, settings: Any) -> None:
        settings.RHETOR_CORS_ORIGINS = [UI]
        settings.CORS_ALLOWED_ORIGINS = [UI]

    def preflight(self, client: Client, origin: str) -> Any:
        return client.options(
            "/message",
            HTTP_ORIGIN=origin,
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
            HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type,x-api-key",
        )

    def test_the_ui_origin_gets_a_preflight_answer(self, client: Client) -> None:
        response = self.preflight(client, UI)

        assert response.status_code == 200
        assert response["Access-Control-Allow-Origin"] == UI
        assert "x-api-key" in response["Access-Control-Allow-Headers"]
        assert "POST" in response["Access-Control-Allow-Methods"]

    def test_another_origin_gets_no_cors_headers(self, client: Client) -> None:
        preflight = self.preflight(client, "http://evil.example")
        actual = client.get("/health", HTTP_ORIGIN="http://evil.example")

        assert "Access-Control-Allow-Origin" not in preflight
        assert "Access-Control-Allow-Origin" not in actual

    def test_actual_responses_carry_the_ui_origin(self, client: Client) -> None:
        response = client.get("/health", HTTP_ORIGIN=UI)

        assert response["Access-Control-Allow-Origin"] == UI
        assert "Retry-After" in response["Access-Control-Expose-Headers"]

    def test_without_configured_origins_nobody_gets_cors(self, client: Client) -> None:
        with override_settings(RHETOR_CORS_ORIGINS=[], CORS_ALLOWED_ORIGINS=[]):
            response = client.get("/health", HTTP_ORIGIN=UI)

        assert "Access-Control-Allow-Origin" not in response


def test_the_cors_setting_comes_from_rhetor_cors_origins() -> None:
    from django.conf import settings

    assert settings.CORS_ALLOWED_ORIGINS == settings.RHETOR_CORS_ORIGINS
    assert not getattr(settings, "CORS_ALLOW_ALL_ORIGINS", False)


# --- WebSocket --------------------------------------------------------------------------------


class WebSocketAccessTests(TransactionTestCase):
    serialized_rollback = True

    async def connect(
        self, path: str = "/ws", headers: list[tuple[bytes, bytes]] | None = None
    ) -> tuple[WebsocketCommunicator, bool]:
        communicator = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), path, headers=headers or []
        )
        connected, _ = await communicator.connect()
        return communicator, connected

    async def request(self, ws: WebsocketCommunicator, payload: dict[str, Any]) -> dict[str, Any]:
        """The request's outcome frame (ERROR, RESPONSE or the done UPDATE), read through
        the typing-off frame that closes a request that started."""
        await ws.send_json_to({"type": "LLM_REQUEST", "payload": payload, "req_id": "r1"})
        outcome: dict[str, Any] = {}
        started = False
        while True:
            frame = await ws.receive_json_from(timeout=15)
            if frame["payload"].get("status") == "typing":
                started = frame["payload"]["isTyping"]
                if not started:
                    return outcome
            elif frame["type"] in ("ERROR", "RESPONSE") or frame["payload"].get("done"):
                outcome = frame
                if not started:
                    return outcome

    @override_settings(**REMOTE)
    async def test_a_socket_without_a_key_is_refused_when_auth_is_required(self) -> None:
        ws, connected = await self.connect()
        assert connected is False
        await ws.disconnect()

    @override_settings(**REMOTE)
    async def test_a_key_in_the_query_string_or_header_opens_the_socket(self) -> None:
        from asgiref.sync import sync_to_async

        created = await sync_to_async(make_key)(scopes="messages")
        for path, headers in (
            (f"/ws?api_key={created.token}", []),
            ("/ws", [(b"x-api-key", created.token.encode())]),
            ("/ws", [(b"authorization", f"Bearer {created.token}".encode())]),
        ):
            ws, connected = await self.connect(path, headers)
            assert connected is True, path
            frame = await self.request(ws, {"message": "hi", "context": "ergon:ws"})
            assert frame["payload"].get("done") is True, frame
            await ws.disconnect()

    @override_settings(**REMOTE)
    async def test_a_bad_key_is_refused(self) -> None:
        ws, connected = await self.connect("/ws?api_key=rk_00000000_" + "a" * 43)
        assert connected is False
        await ws.disconnect()

    @override_settings(**REMOTE)
    async def test_frames_need_their_scope_and_a_pinned_key_its_components(self) -> None:
        from asgiref.sync import sync_to_async

        reader = await sync_to_async(make_key)(name="reader", scopes="budget:read")
        ergon = await sync_to_async(make_key)(scopes="messages", components="ergon")
        await sync_to_async(context_create)(context_id="telos:plans", component="telos")

        ws, _ = await self.connect(f"/ws?api_key={reader.token}")
        refused = await self.request(ws, {"message": "hi", "context": "ergon:ws"})
        await ws.disconnect()
        ws, _ = await self.connect(f"/ws?api_key={ergon.token}")
        other = await self.request(ws, {"message": "hi", "context": "telos:plans"})
        await ws.send_json_to({"type": "SUBSCRIBE", "payload": {"context": "telos:plans"}})
        subscribe = await ws.receive_json_from(timeout=15)
        own = await self.request(ws, {"message": "hi", "context": "ergon:ws"})
        await ws.disconnect()

        assert refused["type"] == "ERROR"
        assert refused["payload"]["code"] == "forbidden"
        assert refused["payload"]["scope"] == "messages"
        assert refused["req_id"] == "r1"
        assert other["type"] == "ERROR"
        assert other["payload"]["code"] == "forbidden"
        assert subscribe["type"] == "ERROR"
        assert subscribe["payload"]["code"] == "forbidden"
        assert own["payload"].get("done") is True

    @override_settings(**REMOTE)
    async def test_websocket_requests_count_against_the_rate_limit(self) -> None:
        from asgiref.sync import sync_to_async

        created = await sync_to_async(make_key)(scopes="messages", rpm=1)
        ws, _ = await self.connect(f"/ws?api_key={created.token}")
        first = await self.request(ws, {"message": "hi", "context": "ergon:ws"})
        second = await self.request(ws, {"message": "hi", "context": "ergon:ws"})
        await ws.disconnect()

        assert first["payload"].get("done") is True
        assert second["type"] == "ERROR"
        assert second["payload"]["code"] == "rate_limited"
        assert second["payload"]["retry_after"] >= 1

    @override_settings(**REMOTE)
    async def test_budget_events_need_budget_read(self) -> None:
        from asgiref.sync import sync_to_async

        created = await sync_to_async(make_key)(scopes="messages")
        ws, _ = await self.connect(f"/ws?api_key={created.token}")
        await ws.send_json_to({"type": "SUBSCRIBE", "payload": {"budget": True}})
        reply = await ws.receive_json_from(timeout=15)
        await ws.disconnect()

        assert reply["type"] == "ERROR"
        assert reply["payload"]["scope"] == "budget:read"


async def test_a_pinned_operator_gets_only_its_components_budget_events() -> None:
    from access.auth import Principal
    from llm.consumers import RhetorConsumer

    sent: list[dict[str, Any]] = []
    consumer = RhetorConsumer()

    async def capture(content: dict[str, Any], close: bool = False) -> None:
        sent.append(content)

    consumer.send_json = capture  # type: ignore[method-assign]
    consumer.principal = Principal(
        key_id="0011aabb", name="ergon", scopes=frozenset({"budget:read"}), components=("ergon",)
    )
    for component in ("telos", "ergon"):
        await consumer.budget_event(
            {"kind": "BUDGET_WARNING", "payload": {"component": component, "warnings": ["80%"]}}
        )

    assert [f["payload"]["component"] for f in sent] == ["ergon"]


class WebSocketRevocationTests(TransactionTestCase):
    serialized_rollback = True

    @override_settings(**REMOTE)
    async def test_a_key_revoked_while_the_socket_is_open_ends_it(self) -> None:
        from asgiref.sync import sync_to_async

        from access.services import api_key_revoke

        created = await sync_to_async(make_key)(scopes="messages")
        ws = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws?api_key={created.token}")
        connected, _ = await ws.connect()
        assert connected is True
        await ws.send_json_to({"type": "STATUS"})
        status = await ws.receive_json_from(timeout=15)

        await sync_to_async(api_key_revoke)(key_id=created.key.key_id)
        await ws.send_json_to({"type": "STATUS"})
        refused = await ws.receive_json_from(timeout=15)
        closed = await ws.receive_output(timeout=15)

        assert status["type"] == "RESPONSE"
        assert refused["type"] == "ERROR"
        assert refused["payload"]["code"] == "unauthorized"
        assert closed == {"type": "websocket.close", "code": 4401}
        await ws.disconnect()

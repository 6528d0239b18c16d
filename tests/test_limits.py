"""Input limits: request body size (413), one message's length and the number of messages of
a conversation (422 naming the field), WebSocket frame size (an ERROR frame; the socket
stays open). Nothing over a limit reaches a provider or the ledger."""

import json
from typing import Any

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import AsyncClient

from budget.models import UsageRecord
from contexts.models import Message
from rhetor_site.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

MAX_CHARS = django_settings.RHETOR_MAX_MESSAGE_CHARS
MAX_MESSAGES = django_settings.RHETOR_MAX_CHAT_MESSAGES


async def post(path: str, body: Any) -> Any:
    data = body if isinstance(body, str) else json.dumps(body)
    return await AsyncClient().post(path, data, content_type="application/json")


def fields(response: Any) -> list[str]:
    return [f["field"] for f in response.json()["fields"]]


async def nothing_was_sent() -> None:
    assert await UsageRecord.objects.aexists() is False
    assert await Message.objects.aexists() is False


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/message", {"message": "x" * 3000}),
        ("/stream", {"message": "x" * 3000}),
        ("/chat", {"messages": [{"role": "user", "content": "x" * 3000}]}),
        ("/templates", {"name": "big", "content": "x" * 3000}),
        ("/contexts/ergon:big/messages", {"role": "user", "content": "x" * 3000}),
    ],
)
async def test_a_body_over_the_limit_is_a_413_with_a_json_error(
    settings: Any, path: str, body: dict[str, Any]
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048

    response = await post(path, body)

    assert response.status_code == 413
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response.json() == {
        "error": "The request body is larger than the limit of 2048 bytes",
        "code": "payload_too_large",
        "limit": 2048,
    }
    await nothing_was_sent()


async def test_a_body_within_the_limit_is_served(settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048

    response = await post("/message", {"message": "x" * 1900})

    assert response.status_code == 200
    assert response.json()["provider"] == "simulated"


def test_the_body_limit_comes_from_rhetor_max_body_bytes() -> None:
    assert django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE == django_settings.RHETOR_MAX_BODY_BYTES
    # A message at its own limit still fits in a body (JSON-escaped ASCII).
    assert django_settings.RHETOR_MAX_BODY_BYTES > MAX_CHARS + 1024


async def test_a_message_over_the_length_limit_is_a_422_naming_the_field() -> None:
    response = await post("/message", {"message": "x" * (MAX_CHARS + 1)})

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert fields(response) == ["message"]
    assert f"at most {MAX_CHARS} characters" in response.json()["error"]
    await nothing_was_sent()


async def test_a_chat_message_over_the_length_limit_names_its_index() -> None:
    conversation = [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "x" * (MAX_CHARS + 1)},
        {"role": "user", "content": "and?"},
    ]

    response = await post("/chat", {"messages": conversation})

    assert response.status_code == 422
    assert fields(response) == ["messages.1.content"]
    await nothing_was_sent()


async def test_too_many_chat_messages_is_a_422_naming_the_field() -> None:
    conversation = [{"role": "user", "content": "hi"}] * (MAX_MESSAGES + 1)

    response = await post("/chat", {"messages": conversation})

    assert response.status_code == 422
    assert fields(response) == ["messages"]
    assert f"at most {MAX_MESSAGES} items" in response.json()["error"]
    await nothing_was_sent()


async def test_the_most_chat_messages_allowed_are_served() -> None:
    conversation = [{"role": "user", "content": "hi"}] * MAX_MESSAGES

    response = await post("/chat", {"messages": conversation, "context_id": "many"})

    assert response.status_code == 200


async def test_a_context_message_over_the_length_limit_is_a_422() -> None:
    response = await post(
        "/contexts/ergon:long/messages", {"role": "user", "content": "x" * (MAX_CHARS + 1)}
    )

    assert response.status_code == 422
    assert fields(response) == ["content"]
    await nothing_was_sent()


def test_the_limits_are_in_the_openapi_document() -> None:
    from rhetor_site.api import api

    schemas = api.get_openapi_schema()["components"]["schemas"]
    assert schemas["MessageIn"]["properties"]["message"]["maxLength"] == MAX_CHARS
    assert schemas["ChatIn"]["properties"]["messages"]["maxItems"] == MAX_MESSAGES


async def test_a_websocket_frame_over_the_limit_is_an_error_frame_and_the_socket_stays_open(
    settings: Any,
) -> None:
    settings.RHETOR_MAX_WS_FRAME_BYTES = 1000
    ws = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws")
    connected, _ = await ws.connect()
    assert connected
    try:
        big = {"type": "LLM_REQUEST", "payload": {"message": "é" * 600}}  # 1,200+ bytes
        await ws.send_json_to(big)
        error = await ws.receive_json_from(timeout=5)
        await ws.send_json_to({"type": "REGISTER", "payload": {"component_id": "ergon"}})
        registered = await ws.receive_json_from(timeout=5)
    finally:
        await ws.disconnect()

    assert error["type"] == "ERROR"
    assert error["payload"]["code"] == "frame_too_large"
    assert "limit is 1000" in error["payload"]["error"]
    assert error["payload"]["context"] == "unknown"
    assert registered["type"] == "RESPONSE"
    assert registered["payload"]["status"] == "registered"
    await nothing_was_sent()


async def test_a_websocket_message_over_the_length_limit_is_a_validation_error_frame() -> None:
    ws = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws")
    connected, _ = await ws.connect()
    assert connected
    try:
        payload = {"message": "x" * (MAX_CHARS + 1), "context": "ergon"}
        await ws.send_json_to({"type": "LLM_REQUEST", "payload": payload})
        error = await ws.receive_json_from(timeout=5)
    finally:
        await ws.disconnect()

    assert error["type"] == "ERROR"
    assert error["payload"]["code"] == "validation_error"
    assert "message" in error["payload"]["error"]
    assert error["payload"]["context"] == "ergon"

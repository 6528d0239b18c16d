"""WebSocket routes of every app, aggregated for rhetor_site.asgi."""

from typing import Any

from llm.routing import websocket_urlpatterns as llm_websocket_urlpatterns

websocket_urlpatterns: list[Any] = [*llm_websocket_urlpatterns]

"""WebSocket routes of every app, aggregated for rhetor_site.asgi."""

from typing import Any

websocket_urlpatterns: list[Any] = []

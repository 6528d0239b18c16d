from django.urls import path

from llm.consumers import RhetorConsumer

# channels routes ASGI applications with Django's path(), whose stubs only know views.
websocket_urlpatterns = [path("ws", RhetorConsumer.as_asgi())]  # type: ignore[arg-type]

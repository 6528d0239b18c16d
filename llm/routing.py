from django.urls import path

from llm.consumers import RhetorConsumer

websocket_urlpatterns = [path("ws", RhetorConsumer.as_asgi())]

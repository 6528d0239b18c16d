"""ASGI entry point: HTTP through Django, WebSockets through Channels, on one port."""

import os
import threading

from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rhetor_site.settings")

from rhetor_site.handler import get_asgi_application

# Django's handler, with request threads (and their database connections) reused.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from rhetor_site.routing import websocket_urlpatterns  # noqa: E402
from rhetor_site.websocket import origin_checked  # noqa: E402

# The admin console needs its CSS and JS. Daphne has no static file server, so unless an
# operator serves STATIC_ROOT from a front web server (RHETOR_SERVE_STATIC=false), Django's
# staticfiles handler answers /static/ itself; every other path goes straight to Django.
http_app = (
    ASGIStaticFilesHandler(django_asgi_app) if settings.RHETOR_SERVE_STATIC else django_asgi_app
)

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": origin_checked(URLRouter(websocket_urlpatterns)),
    }
)

if settings.RHETOR_WARM_TOKENIZER:
    # A server process loads the tokenizer in the background while it starts accepting.
    from rhetor_site.tokens import warm_up

    threading.Thread(target=warm_up, name="rhetor-warm-tokenizer", daemon=True).start()

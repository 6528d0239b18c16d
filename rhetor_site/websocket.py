"""WebSocket origin checking.

Browsers always send `Origin` on a WebSocket handshake, so a browser page is accepted only
from the site's own hosts (ALLOWED_HOSTS) or a configured UI origin (RHETOR_CORS_ORIGINS,
e.g. the Tekton UI). Non-browser clients (Tekton components, the Python clients) send no
Origin; cross-site hijacking is a browser attack, so they are let through to the
application, whose API-key check applies to them like to REST.
"""

from typing import Any
from urllib.parse import ParseResult

from channels.security.websocket import OriginValidator
from django.conf import settings


class BrowserOriginValidator(OriginValidator):
    """Allowed origins are read from settings on every handshake, so they follow
    configuration changes (and tests' overrides)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    # The base class stores a plain attribute set by its __init__, which this class does not
    # call; a read-only property that re-reads settings is the point of this subclass.
    @property
    def allowed_origins(self) -> list[str]:  # type: ignore[override]
        return [*settings.ALLOWED_HOSTS, *settings.RHETOR_CORS_ORIGINS]

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        if parsed_origin is None:
            return True
        return bool(self.validate_origin(parsed_origin))


def origin_checked(application: Any) -> BrowserOriginValidator:
    return BrowserOriginValidator(application)

from typing import Any

from django.apps import AppConfig
from django.core import checks


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Access (API keys)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from rhetor_site import redaction

        redaction.install_log_filter()
        checks.register(check_anonymous_access, checks.Tags.security, deploy=True)


def check_anonymous_access(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """`check --deploy`: a production server must not answer anonymous requests."""
    from access.auth import auth_required

    if auth_required():
        return []
    return [
        checks.Warning(
            "Requests without an API key get every scope (RHETOR_HOST is loopback and "
            "RHETOR_REQUIRE_AUTH is not true).",
            hint="Set RHETOR_REQUIRE_AUTH=true for a deployed Rhetor, above all behind a "
            "reverse proxy on the same machine.",
            id="access.W001",
        )
    ]

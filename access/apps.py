from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Access (API keys)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from access import redaction

        redaction.install_log_filter()

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from access import services
from rhetor_site.errors import RhetorError


class Command(BaseCommand):
    help = "Revoke an API key by its prefix (rk_<id>). Idempotent."
    requires_migrations_checks = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key", help="The key's prefix rk_<id> (or the whole key).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            key = services.api_key_revoke(key_id=options["key"])
        except RhetorError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Revoked {key.prefix} ({key.name}); running servers refuse it within "
                f"{settings.RHETOR_API_KEY_CACHE_SECONDS:g} s."
            )
        )

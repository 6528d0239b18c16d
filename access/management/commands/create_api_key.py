from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from access import services
from access.models import SCOPES
from rhetor_site.errors import RhetorError


class Command(BaseCommand):
    help = (
        "Create an API key and print it once (only its hash is stored). Example: "
        "create_api_key --name ergon --scopes messages,prompts:read --components ergon"
    )
    requires_migrations_checks = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="Who holds the key.")
        parser.add_argument(
            "--scopes",
            required=True,
            help=f"Comma separated, or 'all'. Known: {', '.join(SCOPES)}.",
        )
        parser.add_argument(
            "--components",
            default="",
            help="Comma separated components the key may act as (default: any).",
        )
        parser.add_argument("--rpm", type=int, default=None, help="Requests per minute (0: none).")
        parser.add_argument("--tpm", type=int, default=None, help="Tokens per minute (0: none).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            created = services.api_key_create(
                name=options["name"],
                scopes=options["scopes"],
                components=options["components"],
                requests_per_minute=options["rpm"],
                tokens_per_minute=options["tpm"],
                created_by="manage.py create_api_key",
            )
        except RhetorError as exc:
            raise CommandError(exc.message) from exc
        key = created.key
        self.stdout.write(
            self.style.SUCCESS(
                f"Created API key {key.prefix} for {key.name} "
                f"(scopes: {', '.join(key.scopes)}; "
                f"components: {', '.join(key.components) or 'any'}). "
                "Copy it now, it is not stored:"
            )
        )
        self.stdout.write(created.token)

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from access import selectors


class Command(BaseCommand):
    help = "List API keys (prefix, name, scopes, components, last use); never their secrets."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--all", action="store_true", help="Include revoked keys.")

    def handle(self, *args: Any, **options: Any) -> None:
        keys = list(selectors.api_key_list(include_revoked=options["all"]))
        for key in keys:
            used = key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "never"
            state = "revoked" if key.revoked_at else "active"
            self.stdout.write(
                f"{key.prefix}  {key.name}  [{', '.join(key.scopes)}]  "
                f"components={','.join(key.components) or 'any'}  last_used={used}  {state}"
            )
        self.stdout.write(self.style.SUCCESS(f"{len(keys)} API key(s)"))

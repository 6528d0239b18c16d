import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from budget import services


class Command(BaseCommand):
    help = (
        "Release budget holds of requests that never settled (a worker died mid-request), "
        "recording them as errors with nothing charged."
    )
    requires_migrations_checks = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", type=int, default=3600, help="Seconds (default 3600).")

    def handle(self, *args: Any, **options: Any) -> str | None:
        released = services.reservation_release_stale(
            older_than=dt.timedelta(seconds=options["older_than"])
        )
        self.stdout.write(self.style.SUCCESS(f"Released {released} stale budget hold(s)."))
        return None

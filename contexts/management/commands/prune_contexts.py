import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from contexts.services import context_prune

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `2w`, `90m`, `45s`."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise CommandError(f"--older-than {text!r}: use a number and a unit, e.g. 30d, 12h, 2w")
    amount, unit = int(match.group(1)), match.group(2)
    return timedelta(**{_UNITS[unit]: amount})


class Command(BaseCommand):
    help = "Delete contexts (with their messages and summaries) not updated for a while."
    requires_migrations_checks = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", required=True, dest="older_than", help="e.g. 30d")
        parser.add_argument("--component", default=None)
        parser.add_argument("--dry-run", action="store_true", dest="dry_run")

    def handle(self, *args: Any, **options: Any) -> str | None:
        cutoff = timezone.now() - parse_duration(options["older_than"])
        result = context_prune(
            older_than=cutoff, component=options["component"], dry_run=options["dry_run"]
        )
        verb = "Would delete" if options["dry_run"] else "Deleted"
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} {result.contexts} context(s) with {result.messages} message(s) "
                f"not updated since {cutoff.isoformat(timespec='seconds')}."
            )
        )
        return None

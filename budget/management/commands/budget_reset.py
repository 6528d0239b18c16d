from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from budget import services
from budget.policies import PERIODS, usd
from rhetor_site.errors import RhetorError


class Command(BaseCommand):
    help = (
        "Reset the current window of a budget period for one scope. The usage ledger is kept; "
        "the reset is recorded as an audit row and the window counts from zero again."
    )
    requires_migrations_checks = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", required=True, choices=PERIODS)
        parser.add_argument(
            "--scope", default="all", help='"all" (default), "provider:<id>" or "component:<name>"'
        )
        parser.add_argument("--note", default="", help="Why (kept in the audit row).")
        parser.add_argument("--actor", default="budget_reset command")

    def handle(self, *args: Any, **options: Any) -> str | None:
        try:
            kind, value = services.parse_scope(options["scope"])
            reset = services.budget_reset(
                period=options["period"],
                scope_kind=kind,
                scope_value=value,
                actor=options["actor"],
                note=options["note"],
            )
        except RhetorError as exc:
            raise CommandError(exc.message) from exc
        moved = reset.spent_nanos - reset.baseline_before
        self.stdout.write(
            self.style.SUCCESS(
                f"Reset the {reset.period} budget window of {options['scope']} starting "
                f"{reset.window_start}: ${usd(moved)} no longer counts (audit row {reset.pk})."
            )
        )
        return None

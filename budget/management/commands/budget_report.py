from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from budget import selectors
from budget.policies import PERIODS, usd


class Command(BaseCommand):
    help = "Print the spend of the current budget window as a table, grouped by one field."
    requires_migrations_checks = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", default="daily", choices=PERIODS)
        parser.add_argument(
            "--group-by", default="provider", choices=selectors.GROUP_BY_FIELDS, dest="group_by"
        )

    def handle(self, *args: Any, **options: Any) -> str | None:
        period, group_by = options["period"], options["group_by"]
        summary = selectors.usage_summary(period=period, group_by=group_by)
        start, end = selectors.window_range(period=period)
        rows = [
            (
                key or "(none)",
                str(g.count),
                str(g.input_tokens),
                str(g.output_tokens),
                usd(g.cost_nanos),
            )
            for key, g in sorted(summary.groups.items(), key=lambda kv: -kv[1].cost_nanos)
        ]
        t = summary.totals
        total = (
            "TOTAL",
            str(t.count),
            str(t.input_tokens),
            str(t.output_tokens),
            usd(t.cost_nanos),
        )
        header = (group_by, "requests", "input tokens", "output tokens", "cost (USD)")
        widths = [max(len(r[i]) for r in [header, *rows, total]) for i in range(5)]

        def line(cells: tuple[str, ...]) -> str:
            first = cells[0].ljust(widths[0])
            rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
            return "  ".join([first, *rest])

        rule = "  ".join("-" * w for w in widths)
        self.stdout.write(f"{period} window {start.isoformat()} .. {end.isoformat()}")
        self.stdout.write(line(header))
        self.stdout.write(rule)
        for row in rows:
            self.stdout.write(line(row))
        self.stdout.write(rule)
        self.stdout.write(self.style.SUCCESS(line(total)))
        return None

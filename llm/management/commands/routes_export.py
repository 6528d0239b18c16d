"""`manage.py routes_export`: the task routes as RHETOR_TASK_CONFIG JSON."""

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from llm.route_table import route_table
from llm.routes import route_to_spec
from llm.selectors import task_route_list


class Command(BaseCommand):
    help = (
        "Write the task routes in the RHETOR_TASK_CONFIG format (the original Rhetor's "
        "task configuration JSON), to stdout or --output FILE; routes_import reads it back."
    )
    requires_migrations_checks = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-o", "--output", help="Write to this file instead of stdout.")

    def handle(self, *args: Any, **options: Any) -> str | None:
        try:
            # An empty table is seeded first, so the export shows what is served.
            routes = route_table().routes
            names = [row.name for row in task_route_list()]
        except DatabaseError as exc:
            raise CommandError(f"cannot read the routes ({exc}); run: manage.py migrate") from exc
        config = {name: route_to_spec(routes[name]) for name in names}
        text = json.dumps(config, indent=2) + "\n"
        if not options["output"]:
            self.stdout.write(text, ending="")
            return None
        try:
            Path(options["output"]).write_text(text)
        except OSError as exc:
            raise CommandError(f"cannot write {options['output']}: {exc.strerror}") from exc
        self.stdout.write(
            self.style.SUCCESS(f"Exported {len(config)} task routes to {options['output']}")
        )
        return None

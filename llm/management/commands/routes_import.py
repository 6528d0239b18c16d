"""`manage.py routes_import FILE`: load task routes from RHETOR_TASK_CONFIG JSON."""

import json
import sys
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from llm.routes import parse_task_config
from llm.services import task_routes_import


def _names(names: list[str]) -> str:
    return f"{len(names)}" + (f" ({', '.join(names)})" if names else "")


class Command(BaseCommand):
    help = (
        "Load task routes from a JSON file in the RHETOR_TASK_CONFIG format (what "
        "routes_export writes). Every route is validated first: all are loaded or none. "
        "Routes of the same name are replaced; --replace also deletes the routes the file "
        "does not name (it must then name `default`). Every worker picks the change up "
        "without a restart."
    )
    requires_migrations_checks = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="The JSON file ('-' for stdin).")
        parser.add_argument(
            "--replace",
            action="store_true",
            help="Delete the routes the file does not name.",
        )

    def handle(self, *args: Any, **options: Any) -> str | None:
        path = options["file"]
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            routes = parse_task_config(json.loads(text))
        except json.JSONDecodeError as exc:
            raise CommandError(f"{path} is not valid JSON: {exc}") from exc
        except ImproperlyConfigured as exc:
            raise CommandError(f"{path}: {exc}") from exc
        try:
            result = task_routes_import(routes=routes, replace=options["replace"])
        except ValidationError as exc:
            problems = "\n  ".join(exc.messages)
            raise CommandError(f"nothing was imported from {path}:\n  {problems}") from exc
        except DatabaseError as exc:
            raise CommandError(f"cannot write the routes ({exc}); run: manage.py migrate") from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {len(routes)} task routes from {path}: "
                f"created {_names(result.created)}, updated {_names(result.updated)}, "
                f"deleted {_names(result.deleted)}"
            )
        )
        return None

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from prompts.transfer import load, prompts_import
from rhetor_site.errors import RhetorError


class Command(BaseCommand):
    help = (
        "Import templates, prompts and personalities written by export_prompts (YAML or "
        "JSON). Idempotent; stored versions are never rewritten."
    )
    requires_migrations_checks = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)

    def handle(self, *args: Any, **options: Any) -> str | None:
        path: Path = options["path"]
        if not path.is_file():
            raise CommandError(f"{path} is not a file")
        try:
            summary = prompts_import(data=load(path))
        except RhetorError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(self.style.SUCCESS(f"Imported {path}: {summary.line()}"))
        return None

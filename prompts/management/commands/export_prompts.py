from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from prompts.transfer import dump, prompts_export


class Command(BaseCommand):
    help = (
        "Export every template, prompt (all versions, active pointer) and personality to "
        "PATH (.yaml/.yml for YAML, else JSON)."
    )
    requires_migrations_checks = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)

    def handle(self, *args: Any, **options: Any) -> str | None:
        path: Path = options["path"]
        data = prompts_export()
        dump(data, path)
        versions = sum(len(e["versions"]) for e in data["templates"] + data["prompts"])
        self.stdout.write(
            self.style.SUCCESS(
                f"Exported {len(data['templates'])} templates, {len(data['prompts'])} prompts "
                f"and {versions} versions to {path}"
            )
        )
        return None

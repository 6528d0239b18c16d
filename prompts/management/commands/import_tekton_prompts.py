from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from prompts.transfer import tekton_prompts_import
from rhetor_site.errors import RhetorError


class Command(BaseCommand):
    help = (
        "Import the original Rhetor's files from PATH: prompts/<prompt_id>.yaml and "
        "templates/<category>/<template_id>.yaml. Idempotent."
    )
    requires_migrations_checks = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="The original data directory")

    def handle(self, *args: Any, **options: Any) -> str | None:
        root: Path = options["path"]
        if not root.is_dir():
            raise CommandError(f"{root} is not a directory")
        try:
            summary = tekton_prompts_import(root=root)
        except RhetorError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(self.style.SUCCESS(f"Imported {root}: {summary.line()}"))
        return None

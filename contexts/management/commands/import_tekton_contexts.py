import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from contexts.importing import ImportFormatError, context_import_tekton


class Command(BaseCommand):
    help = (
        "Import the original Rhetor's JSON context files (a file, or every *.json in a "
        "directory). Idempotent: messages already imported are skipped."
    )
    requires_migrations_checks = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="a context .json file or a directory of them")

    def handle(self, *args: Any, **options: Any) -> str | None:
        path = Path(options["path"])
        if path.is_dir():
            files = sorted(path.glob("*.json"))
        elif path.is_file():
            files = [path]
        else:
            raise CommandError(f"No such file or directory: {path}")
        contexts = added = archived = failed = 0
        for file in files:
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
                result = context_import_tekton(data=data)
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, ImportFormatError) as exc:
                failed += 1
                self.stderr.write(f"{file.name}: skipped ({exc})")
                continue
            contexts += 1
            added += result.messages_added
            archived += result.archived_added
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {contexts} context(s): {added} new message(s), {archived} new "
                f"archived message(s); {failed} file(s) skipped."
            )
        )
        return None

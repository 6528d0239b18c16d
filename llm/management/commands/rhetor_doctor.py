"""`manage.py rhetor_doctor`: check the configuration and say what to fix."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from llm.doctor import run_checks

MARK = {"ok": "ok  ", "warning": "WARN", "problem": "FAIL"}


class Command(BaseCommand):
    help = (
        "Check Rhetor's configuration: database reachable and migrated, API keys present "
        "for the enabled providers, providers reachable, task routes valid, prices set for "
        "every routed model, Redis present when several workers need it, Hermes reachable "
        "when HERMES_API_URL is set. Prints what to fix; exits non-zero on problems."
    )

    def handle(self, *args: Any, **options: Any) -> str | None:
        findings = run_checks()
        for f in findings:
            line = f"{MARK[f.level]} {f.check}: {f.message}"
            if f.level == "ok":
                self.stdout.write(line)
                continue
            style = self.style.WARNING if f.level == "warning" else self.style.ERROR
            self.stdout.write(style(line))
            if f.fix:
                self.stdout.write(f"     fix: {f.fix}")
        problems = sum(f.level == "problem" for f in findings)
        warnings = sum(f.level == "warning" for f in findings)
        summary = f"{problems} problem(s), {warnings} warning(s)"
        if problems:
            raise CommandError(f"rhetor_doctor: {summary}; see the fixes above")
        self.stdout.write(self.style.SUCCESS(f"rhetor_doctor: no problems, {warnings} warning(s)"))
        return None

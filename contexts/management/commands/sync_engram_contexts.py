import asyncio
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from contexts.engram import EngramClient, engram_enqueue_all, engram_process_one
from contexts.models import EngramOutbox


class Command(BaseCommand):
    help = (
        "Re-sync contexts to Engram: queue every context (unless --pending-only) and send "
        "the queue until it is empty or Engram fails. --watch keeps mirroring changes."
    )
    requires_migrations_checks = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--pending-only", action="store_true", dest="pending_only")
        parser.add_argument("--watch", action="store_true", help="keep running (a worker)")
        parser.add_argument("--interval", type=float, default=5.0)

    def handle(self, *args: Any, **options: Any) -> str | None:
        if not settings.ENGRAM_URL:
            raise CommandError("ENGRAM_URL is not set.")
        queued = 0 if options["pending_only"] else engram_enqueue_all()
        sent, failed = asyncio.run(self.drain(watch=options["watch"], interval=options["interval"]))
        left = EngramOutbox.objects.count()
        self.stdout.write(
            self.style.SUCCESS(
                f"Queued {queued} context(s); sent {sent}, {failed} failed "
                f"(retried later); {left} still queued."
            )
        )
        return None

    async def drain(self, *, watch: bool, interval: float) -> tuple[int, int]:
        client = EngramClient()
        sent = failed = 0
        count = sync_to_async(EngramOutbox.objects.count)
        try:
            while True:
                before = await count()
                while await engram_process_one(client=client):
                    pass
                after = await count()
                sent += max(0, before - after)
                failed += after
                if not watch:
                    return sent, after
                failed = 0
                await asyncio.sleep(interval)
        finally:
            await client.aclose()

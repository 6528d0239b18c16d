"""`manage.py serve`: run Rhetor with daphne, HTTP and WebSocket on one port.

The command is a small supervisor: it binds the port once, starts RHETOR_WORKERS daphne
workers that share the listening socket (rhetor_site/worker.py), and itself runs what must
happen once per server rather than once per worker — Hermes registration, heartbeats
and unregistration — because daphne runs no ASGI lifespan events. SIGINT/SIGTERM is a
graceful shutdown: the supervisor closes its copy of the socket and passes the signal on;
each worker drains (stops accepting, lets requests finish for RHETOR_SHUTDOWN_GRACE_SECONDS,
cuts the rest as a client disconnect would, writes every settle and store) and exits.
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from access.auth import access_notice, insecure_secret_key, listens_on_loopback
from llm.hermes import HermesRegistrar
from rhetor_site.lifecycle import FINISH_SECONDS


def _die_with_parent() -> None:
    """In the worker, before exec: ask Linux to SIGTERM it when the supervisor dies, so a
    killed supervisor never leaves orphaned workers holding the port."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class Command(BaseCommand):
    help = "Serve Rhetor with daphne workers on one port, registered with Hermes when configured."
    requires_migrations_checks = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.RHETOR_HOST)
        parser.add_argument("--port", type=int, default=settings.RHETOR_PORT)
        parser.add_argument("--workers", type=int, default=settings.RHETOR_WORKERS)
        parser.add_argument(
            "--daphne-verbosity", type=int, default=1, help="daphne's -v (2 logs every request)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host, port, workers = options["host"], options["port"], options["workers"]
        if workers < 1:
            raise CommandError("--workers must be at least 1")
        if workers > 1 and not settings.REDIS_URL:
            raise CommandError(
                "More than one worker needs REDIS_URL: the in-memory channel layer cannot "
                "reach across processes."
            )
        if not listens_on_loopback(host) and insecure_secret_key() and not settings.DEBUG:
            raise CommandError(
                f"Refusing to listen on {host} with the development SECRET_KEY: set "
                "DJANGO_SECRET_KEY (see README, Security)."
            )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Streamed replies are many small writes: without TCP_NODELAY (which accepted
        # connections inherit on Linux) Nagle holds each one until the previous is acked.
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            listener.bind((host.strip("[]"), port))
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        listener.listen(1024)
        listener.set_inheritable(True)
        fd = listener.fileno()
        command = [
            sys.executable,
            "-m",
            "rhetor_site.worker",
            "--fd",
            str(fd),
            "-v",
            str(options["daphne_verbosity"]),
        ]
        children = [
            # The workers decide anonymous access from RHETOR_HOST: give them --host's value.
            subprocess.Popen(  # noqa: S603
                command,
                pass_fds=(fd,),
                preexec_fn=_die_with_parent,
                env={**os.environ, "RHETOR_HOST": host},
            )
            for _ in range(workers)
        ]
        shown = f"[{host}]" if ":" in host else host
        self.stdout.write(
            self.style.SUCCESS(
                f"Rhetor {settings.RHETOR_VERSION} on http://{shown}:{port} with {workers} "
                f"worker{'s' if workers != 1 else ''}; admin: http://{shown}:{port}/admin/"
            )
        )
        notice = access_notice(host)
        self.stdout.write(self.style.WARNING(notice) if "ANONYMOUS" in notice else notice)
        try:
            asyncio.run(self._supervise(children, host=shown, port=port))
        finally:
            listener.close()  # the workers' copies close as each one drains
            for child in children:
                if child.poll() is None:
                    child.terminate()  # a graceful shutdown (rhetor_site/worker.py)
            # The grace, then the time the cut requests take to be written.
            wait = settings.RHETOR_SHUTDOWN_GRACE_SECONDS + FINISH_SECONDS + 5
            for child in children:
                try:
                    child.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    self.stderr.write(f"worker {child.pid} did not stop in {wait:.0f}s; killed")
                    child.kill()

    async def _supervise(
        self, children: list[subprocess.Popen[bytes]], *, host: str, port: int
    ) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        async def watch_children() -> None:
            while not stop.is_set():
                if any(child.poll() is not None for child in children):
                    self.stderr.write("a daphne worker exited; stopping Rhetor")
                    stop.set()
                    return
                await asyncio.sleep(0.5)

        tasks = [asyncio.create_task(watch_children())]
        if settings.HERMES_API_URL:
            registrar = HermesRegistrar(base_url=settings.HERMES_API_URL, host=host, port=port)
            tasks.append(asyncio.create_task(registrar.run(stop)))
        await stop.wait()
        await asyncio.gather(*tasks, return_exceptions=True)

"""One worker of `manage.py serve`: daphne on the supervisor's listening socket, with a
graceful shutdown.

    python -m rhetor_site.worker --fd N [--verbosity V]

On SIGTERM or SIGINT the worker drains:
  1. `/health` answers 503 (`draining`), so a load balancer stops sending it requests, and
     it stops accepting connections (its copy of the listening socket is closed);
  2. requests and streams in flight get RHETOR_SHUTDOWN_GRACE_SECONDS to finish; each
     WebSocket finishes its requests and is closed with code 1001 and a reason;
  3. what is still running then is cut the way a client's disconnect cuts it (the
     connection is aborted: the gateway settles it at prompt + delivered tokens, marked
     partial, and stores the partial reply);
  4. the worker exits once every settle and store has been written
     (rhetor_site.lifecycle.finished).
"""

# daphne.server installs Twisted's asyncio reactor: it is imported before anything else.
import daphne.server  # isort: skip
from daphne.ws_protocol import WebSocketProtocol  # isort: skip

import argparse
import asyncio
import logging
import os
import signal
from typing import Any

from django.conf import settings
from twisted.internet import reactor

from rhetor_site import lifecycle

logger = logging.getLogger("rhetor")

CLOSE_GOING_AWAY = 1001
SHUTDOWN_REASON = "Rhetor is restarting; reconnect"  # as llm.consumers says it


class Server(daphne.server.Server):  # type: ignore[misc]  # daphne is untyped
    """daphne's server, keeping its listening ports so a drain can close them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ports: list[Any] = []
        self.draining: asyncio.Task[None] | None = None

    def listen_success(self, port: Any) -> None:
        self.ports.append(port)
        super().listen_success(port)

    def start_drain(self) -> None:
        if self.draining is None:
            self.draining = asyncio.ensure_future(self.drain())

    def _in_flight(self, *, websocket: bool | None = None) -> dict[Any, "asyncio.Future[Any]"]:
        """protocol -> its running application instance (HTTP, WebSocket or both)."""
        found = {}
        for protocol, details in list(self.connections.items()):
            instance = details.get("application_instance")
            if instance is None or instance.done():
                continue
            if websocket is None or websocket == isinstance(protocol, WebSocketProtocol):
                found[protocol] = instance
        return found

    async def _finish_within(self, seconds: float, *, websocket: bool | None = None) -> None:
        running = list(self._in_flight(websocket=websocket).values())
        if running and seconds > 0:
            await asyncio.wait(running, timeout=seconds)

    async def drain(self) -> None:
        loop = asyncio.get_running_loop()
        grace = float(settings.RHETOR_SHUTDOWN_GRACE_SECONDS)
        deadline = loop.time() + grace
        lifecycle.start_draining()
        for port in self.ports:
            port.stopListening()
        logger.info("draining: %d connections in flight, %.0fs grace", len(self.connections), grace)
        # WebSockets finish their requests and close themselves; HTTP requests finish.
        sockets = asyncio.ensure_future(lifecycle.drain_all(deadline))
        await self._finish_within(grace, websocket=False)
        await asyncio.wait([sockets], timeout=max(0.0, deadline - loop.time()))
        # What is left is cut as a client's disconnect would cut it.
        cut = self._in_flight()
        for protocol in cut:
            if isinstance(protocol, WebSocketProtocol):
                protocol.sendClose(code=CLOSE_GOING_AWAY, reason=SHUTDOWN_REASON)
            protocol.transport.abortConnection()
        if cut:
            logger.warning("shutdown: cut %d requests still running after the grace", len(cut))
        until = loop.time() + lifecycle.FINISH_SECONDS
        await self._finish_within(lifecycle.FINISH_SECONDS)
        await lifecycle.finished(within=max(0.0, until - loop.time()))
        reactor.stop()  # type: ignore[misc]  # twisted types the global reactor loosely


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fd", type=int, required=True, help="the listening socket")
    parser.add_argument("-v", "--verbosity", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rhetor_site.settings")
    from rhetor_site.asgi import application

    limit = settings.RHETOR_WS_TRANSPORT_MAX_BYTES
    server = Server(
        application=application,
        endpoints=[f"fd:fileno={args.fd}"],
        signal_handlers=False,
        verbosity=args.verbosity,
        websocket_max_message_size=limit,
        websocket_max_frame_size=limit,
    )

    def install_signals() -> None:
        loop = asyncio.get_event_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.start_drain)

    reactor.callWhenRunning(install_signals)
    server.run()


if __name__ == "__main__":
    main()

"""Registration with Hermes, Tekton's component registry (TEKTON_CONTRACT.md, "Hermes").

One `HermesRegistrar` runs per server — in the `serve` supervisor, not in each worker —
so Rhetor registers once however many daphne workers it runs. Hermes being absent never
stops Rhetor: the first failure is logged once, then registration is retried with
exponential backoff while Rhetor serves.
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

logger = logging.getLogger("rhetor.hermes")

HEARTBEAT_SECONDS = 30.0
BACKOFF_START = 1.0
BACKOFF_MAX = 60.0
CAPABILITIES = ["llm_management", "prompt_engineering", "context_management", "model_selection"]


def registration_payload(*, host: str, port: int) -> dict[str, Any]:
    http = f"http://{host}:{port}"
    return {
        "name": "rhetor",
        "version": settings.RHETOR_VERSION,
        "type": "rhetor",
        "endpoint": http,
        "capabilities": CAPABILITIES,
        "metadata": {
            "description": "LLM Management System for Tekton",
            "endpoints": {"http": http, "ws": f"ws://{host}:{port}/ws"},
            "icon": "🗣️",
            "ui_color": "#7e57c2",
            "priority": 40,
            "managed_port": port,
            "core_component": True,
            "replaces": "llm_adapter",
        },
    }


@dataclass
class Registration:
    component_id: str
    token: str


class HermesRegistrar:
    def __init__(
        self,
        *,
        base_url: str,
        host: str,
        port: int,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        backoff_start: float = BACKOFF_START,
        backoff_max: float = BACKOFF_MAX,
        timeout: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.payload = registration_payload(host=host, port=port)
        self.heartbeat_seconds = heartbeat_seconds
        self.backoff_start = backoff_start
        self.backoff_max = backoff_max
        self.client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)
        self.registration: Registration | None = None
        self._reported_down = False

    def _headers(self) -> dict[str, str]:
        assert self.registration is not None  # noqa: S101
        return {"X-Authentication-Token": self.registration.token}

    async def register(self) -> bool:
        try:
            response = await self.client.post("/api/register", json=self.payload)
            body = response.json() if response.content else {}
        except (httpx.HTTPError, ValueError) as exc:
            self._down(f"cannot reach Hermes at {self.base_url}: {exc.__class__.__name__}")
            return False
        if response.status_code >= 400 or not body.get("success"):
            self._down(f"Hermes refused the registration (HTTP {response.status_code})")
            return False
        self.registration = Registration(str(body.get("component_id")), str(body.get("token")))
        self._reported_down = False
        logger.info("registered with Hermes as %s", self.registration.component_id)
        return True

    def _down(self, message: str) -> None:
        if not self._reported_down:  # log once per outage, keep retrying quietly
            logger.warning("%s; Rhetor keeps serving and retries in the background", message)
            self._reported_down = True
        else:
            logger.debug(message)

    async def heartbeat(self) -> bool:
        """True while Hermes knows us; False when it forgot us (re-register) or is down."""
        assert self.registration is not None  # noqa: S101
        try:
            response = await self.client.post(
                "/api/heartbeat",
                json={
                    "component_id": self.registration.component_id,
                    "status": {"health": "healthy"},
                },
                headers=self._headers(),
            )
            body = response.json() if response.content else {}
        except (httpx.HTTPError, ValueError) as exc:
            self._down(f"Hermes heartbeat failed: {exc.__class__.__name__}")
            return False
        if response.status_code >= 400 or body.get("success") is False:
            logger.info(
                "Hermes forgot this registration (HTTP %s); registering again", response.status_code
            )
            self.registration = None
            return False
        return True

    async def unregister(self) -> None:
        if self.registration is None:
            return
        try:
            await self.client.post(
                "/api/unregister",
                params={"component_id": self.registration.component_id},
                headers=self._headers(),
            )
            logger.info("unregistered from Hermes")
        except httpx.HTTPError as exc:
            logger.warning("could not unregister from Hermes: %s", exc.__class__.__name__)
        self.registration = None

    async def run(self, stop: asyncio.Event) -> None:
        """Register, then heartbeat until `stop` is set; then unregister."""
        delay = self.backoff_start
        try:
            while not stop.is_set():
                if self.registration is None:
                    if await self.register():
                        delay = self.backoff_start
                        wait = self.heartbeat_seconds
                    else:
                        wait, delay = delay, min(delay * 2, self.backoff_max)
                elif await self.heartbeat():
                    wait, delay = self.heartbeat_seconds, self.backoff_start
                else:
                    # Forgotten: register again right away; down: back off.
                    wait = 0 if self.registration is None and not self._reported_down else delay
                    if self._reported_down:
                        delay = min(delay * 2, self.backoff_max)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=wait)
        finally:
            await self.unregister()
            await self.client.aclose()

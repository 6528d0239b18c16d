"""The Tekton WebSocket `/ws` (TEKTON_CONTRACT.md, "WebSocket /ws").

A door of the gateway (llm/gateway/core.py): it parses frames, runs each LLM request as
its own task through the gateway as the socket's caller, and turns what comes back into
UPDATE / RESPONSE / ERROR frames. Several requests may run at once on one socket; closing
the socket cancels them (the gateway stores and meters what was generated).
"""

import asyncio
import json
import logging
from typing import Any

from asgiref.sync import sync_to_async
from asgiref.typing import ASGIReceiveCallable, ASGIReceiveEvent
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from pydantic import ValidationError

from access.auth import principal_for, require_scope, ws_token
from access.errors import Unauthorized
from budget.live import BUDGET_GROUP
from budget.selectors import budget_status
from contexts.pinning import acontext_check
from contexts.services import context_group
from llm.errors import StreamInterrupted
from llm.gateway import Caller, llm_complete, llm_stream_open
from llm.schemas import WsChatIn, WsContextIn, WsMessageIn
from llm.selectors import default_choice_get, provider_availability
from llm.streaming import iso_timestamp, message_payload, pending_payload, usage_payload
from rhetor_site.errors import InvalidInput, RhetorError
from rhetor_site.lifecycle import Drainable, is_draining, on_drain
from rhetor_site.outages import outage_of
from rhetor_site.parsing import refuse_nul

logger = logging.getLogger("llm")
abudget_status = sync_to_async(budget_status)

SOURCE = "LLM"
REGISTERED = "Client registered successfully with Rhetor LLM Manager"
UNKNOWN_TYPE = (
    "Unknown message type {type!r}; expected LLM_REQUEST, CHAT_REQUEST, REGISTER, STATUS, "
    "SUBSCRIBE or UNSUBSCRIBE"
)
CLOSE_GOING_AWAY = 1001
SHUTDOWN_REASON = "Rhetor is restarting; reconnect"
FRAME_TOO_LARGE = "The frame is {size} bytes; the limit is {limit} (RHETOR_MAX_WS_FRAME_BYTES)"


def _validation_text(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ())) or "payload"
        parts.append(f"{field}: {err.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(parts)


async_principal_for = sync_to_async(principal_for)


class RhetorConsumer(AsyncJsonWebsocketConsumer, Drainable):
    # The channel layer (Redis) may go away under an open socket. channels would let the
    # failing layer receive end the consumer; instead the socket keeps serving its frames
    # and the layer is read again, with backoff, until Redis is back.
    @property
    def channel_receive(self) -> ASGIReceiveCallable:
        return self._receive_from_layer

    @channel_receive.setter
    def channel_receive(self, receive: ASGIReceiveCallable) -> None:
        self._layer_receive = receive

    async def _receive_from_layer(self) -> ASGIReceiveEvent:
        delay = 0.5
        while True:
            try:
                return await self._layer_receive()
            except Exception as exc:
                if outage_of(exc) is None:
                    raise
                logger.warning("channel layer unavailable, retrying in %.1fs: %r", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def connect(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()
        self.subscriptions: set[str] = set()
        # The API key: X-API-Key / Authorization: Bearer, or ?api_key= for browsers. Without
        # a valid one (when auth is required) the handshake is refused (HTTP 403).
        self.token = ws_token(self.scope)
        try:
            self.principal = await async_principal_for(self.token)
        except Unauthorized:
            await self.close(code=4401)
            return
        await self.accept()
        on_drain(self)

    async def drain(self, deadline: float) -> None:
        """The worker is shutting down: finish the requests in flight (until `deadline`),
        then close the socket with a reason the client can show."""
        loop = asyncio.get_running_loop()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=max(0.0, deadline - loop.time()))
        if not self.tasks:
            await self.close(code=CLOSE_GOING_AWAY, reason=SHUTDOWN_REASON)

    async def authorize(self, *scopes: str, any_of: bool = False) -> None:
        """Re-check the key (cached; a revocation reaches open sockets within
        RHETOR_API_KEY_CACHE_SECONDS) and the scopes a frame needs."""
        self.principal = await async_principal_for(self.token)
        require_scope(self.principal, *scopes, any_of=any_of)

    async def send_rhetor_error(
        self, exc: RhetorError, *, context: str, request: dict[str, Any]
    ) -> None:
        payload = {"error": exc.message, "code": exc.code, "context": context}
        payload.update({k: v for k, v in exc.details.items() if k not in payload})
        await self.send_frame("ERROR", payload, request)
        if isinstance(exc, Unauthorized):  # the key was revoked while the socket was open
            await self.close(code=4401)

    async def disconnect(self, code: int) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        for group in self.subscriptions:
            await self.channel_layer.group_discard(group, self.channel_name)

    # --- frames --------------------------------------------------------------------------

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        size = len(bytes_data) if bytes_data is not None else len((text_data or "").encode())
        if size > settings.RHETOR_MAX_WS_FRAME_BYTES:  # refused unread; the socket stays open
            message = FRAME_TOO_LARGE.format(size=size, limit=settings.RHETOR_MAX_WS_FRAME_BYTES)
            await self.send_error(message, context="unknown", request={}, code="frame_too_large")
            return
        try:
            raw = text_data or (bytes_data or b"").decode()
            frame = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            await self.send_error(f"Invalid JSON: {exc}", context="unknown", request={})
            return
        try:
            refuse_nul(frame, raw, where="the frame")
        except InvalidInput as exc:
            await self.send_error(exc.message, context="unknown", request={}, code=exc.code)
            return
        if not isinstance(frame, dict):
            await self.send_error("A frame must be a JSON object", context="unknown", request={})
            return
        try:
            await self.dispatch_frame(frame)
        except Exception as exc:
            outage = outage_of(exc)  # e.g. SUBSCRIBE while Redis is down: the socket stays
            if outage is None:
                raise
            payload = frame.get("payload")
            context = payload.get("context") if isinstance(payload, dict) else None
            await self.send_error(
                outage.message, context=str(context or "unknown"), request=frame, code=outage.code
            )

    def frame(self, type_: str, payload: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": type_,
            "source": SOURCE,
            "target": request.get("source") or "UI",
            "timestamp": iso_timestamp(),
            "payload": payload,
        }
        if "req_id" in request:
            out["req_id"] = request["req_id"]
        return out

    async def send_frame(
        self, type_: str, payload: dict[str, Any], request: dict[str, Any]
    ) -> None:
        await self.send_json(self.frame(type_, payload, request))

    async def send_error(
        self, message: str, *, context: str, request: dict[str, Any], code: str = "bad_request"
    ) -> None:
        await self.send_frame(
            "ERROR", {"error": message, "code": code, "context": context}, request
        )

    async def dispatch_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        payload = frame.get("payload")
        if not isinstance(payload, dict):
            payload = {}
        context = str(payload.get("context") or payload.get("context_id") or "unknown")
        if kind in ("LLM_REQUEST", "CHAT_REQUEST") and is_draining():
            await self.send_error(
                SHUTDOWN_REASON, context=context, request=frame, code="shutting_down"
            )
        elif kind in ("LLM_REQUEST", "CHAT_REQUEST"):
            schema = WsMessageIn if kind == "LLM_REQUEST" else WsChatIn
            try:
                parsed = schema.model_validate(payload)
            except ValidationError as exc:
                await self.send_error(
                    _validation_text(exc), context=context, request=frame, code="validation_error"
                )
                return
            try:
                await self.authorize()  # the key is still valid; the gateway does the rest
            except RhetorError as exc:
                await self.send_rhetor_error(exc, context=context, request=frame)
                return
            caller = Caller(principal=self.principal, size_bytes=len(json.dumps(payload)))
            task = asyncio.create_task(self.run_request(parsed, frame, caller))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif kind == "REGISTER":
            await self.send_frame(
                "RESPONSE", {"status": "registered", "message": REGISTERED}, frame
            )
        elif kind == "STATUS":
            try:
                await self.authorize()
            except RhetorError as exc:
                await self.send_rhetor_error(exc, context=context, request=frame)
                return
            await self.send_frame("RESPONSE", await self.status_payload(), frame)
        elif kind in ("SUBSCRIBE", "UNSUBSCRIBE"):
            await self.change_subscription(kind, payload, frame, context)
        else:
            await self.send_error(
                UNKNOWN_TYPE.format(type=kind), context=context, request=frame, code="unknown_type"
            )

    # --- requests ------------------------------------------------------------------------

    async def typing(self, on: bool, context: str, request: dict[str, Any]) -> None:
        await self.send_frame(
            "UPDATE", {"status": "typing", "isTyping": on, "context": context}, request
        )

    async def run_request(
        self, parsed: WsMessageIn | WsChatIn, frame: dict[str, Any], caller: Caller
    ) -> None:
        context = parsed.context_id
        await self.typing(True, context, frame)
        try:
            request = parsed.llm_request()
            if parsed.streaming:
                stream = await llm_stream_open(request, caller)
                base = {"model": stream.model, "provider": stream.provider, "context": context}
                try:
                    async for chunk in stream.chunks():
                        await self.send_frame(
                            "UPDATE", {"chunk": chunk, **base, "done": False}, frame
                        )
                except StreamInterrupted as exc:
                    await self.send_frame(
                        "UPDATE", {"chunk": "", **base, "done": True, "error": exc.message}, frame
                    )
                else:
                    result = stream.result
                    done: dict[str, Any] = {"chunk": "", **base, "done": True}
                    if result is not None:
                        done["usage"] = usage_payload(result)
                        done["fallback"] = result.fallback
                        done["budget_warnings"] = list(result.budget_warnings)
                        done.update(pending_payload(result))
                    await self.send_frame("UPDATE", done, frame)
            else:
                result = await llm_complete(request, caller)
                await self.send_frame("RESPONSE", message_payload(result), frame)
        except RhetorError as exc:
            await self.send_rhetor_error(exc, context=context, request=frame)
        except asyncio.CancelledError:  # the socket closed (the gateway settles what ran)
            raise
        except Exception as exc:
            outage = outage_of(exc)  # the database or Redis is down
            if outage is not None:
                logger.warning("WebSocket request failed: %s (%r)", outage.message, exc)
                await self.send_error(
                    outage.message, context=context, request=frame, code=outage.code
                )
            else:
                logger.exception("WebSocket request failed")
                await self.send_error(
                    "Internal error while handling the request",
                    context=context,
                    request=frame,
                    code="internal_error",
                )
        await self.typing(False, context, frame)

    async def status_payload(self) -> dict[str, Any]:
        available = await provider_availability()
        default_provider, default_model = await default_choice_get(available)
        return {
            "status": "ok",
            "service": "rhetor",
            "version": settings.RHETOR_VERSION,
            "providers": available,
            "default_provider": default_provider,
            "default_model": default_model,
            "budget": await self.budget_payload(),
            "message": "Rhetor is running",
        }

    async def budget_payload(self) -> dict[str, Any]:
        return (await abudget_status()).as_status_payload()

    # --- live context updates ------------------------------------------------------------

    async def change_subscription(
        self, kind: str, payload: dict[str, Any], frame: dict[str, Any], context: str
    ) -> None:
        if payload.get("budget") is True:
            await self.change_budget_subscription(kind, frame)
            if not (payload.get("context") or payload.get("context_id")):
                return
        try:
            parsed = WsContextIn.model_validate(payload)
        except ValidationError as exc:
            await self.send_error(
                _validation_text(exc), context=context, request=frame, code="validation_error"
            )
            return
        try:
            await self.authorize("messages", "contexts:admin", any_of=True)
            if not self.principal.has_scope("contexts:admin"):
                await acontext_check(self.principal, parsed.context_id)
        except RhetorError as exc:
            await self.send_rhetor_error(exc, context=context, request=frame)
            return
        group = context_group(parsed.context_id)
        if kind == "SUBSCRIBE":
            await self.channel_layer.group_add(group, self.channel_name)
            self.subscriptions.add(group)
            status = "subscribed"
        else:
            await self.channel_layer.group_discard(group, self.channel_name)
            self.subscriptions.discard(group)
            status = "unsubscribed"
        await self.send_frame("RESPONSE", {"status": status, "context": parsed.context_id}, frame)

    async def context_messages(self, event: dict[str, Any]) -> None:
        """A message was appended to a subscribed context, by any process."""
        for message in event["messages"]:
            await self.send_json(
                self.frame(
                    "RESPONSE",
                    {"event": "context_message", "message": message["content"], **message},
                    {"source": "SUBSCRIBER"},
                )
            )

    # --- budget events (budget.live) -------------------------------------------------------

    async def change_budget_subscription(self, kind: str, frame: dict[str, Any]) -> None:
        """`SUBSCRIBE` / `UNSUBSCRIBE` with `payload.budget: true`: budget warnings and
        refusals from every process arrive as BUDGET_WARNING / BUDGET_EXCEEDED frames."""
        if kind == "SUBSCRIBE":
            try:
                await self.authorize("budget:read")
            except RhetorError as exc:
                await self.send_rhetor_error(exc, context="budget", request=frame)
                return
            await self.channel_layer.group_add(BUDGET_GROUP, self.channel_name)
            self.subscriptions.add(BUDGET_GROUP)
            status = "subscribed"
        else:
            await self.channel_layer.group_discard(BUDGET_GROUP, self.channel_name)
            self.subscriptions.discard(BUDGET_GROUP)
            status = "unsubscribed"
        await self.send_frame("RESPONSE", {"status": status, "budget": True}, frame)

    async def budget_event(self, event: dict[str, Any]) -> None:
        # A key pinned to components (without budget:admin) sees only its components' events.
        principal = self.principal
        if (
            principal.components
            and not principal.has_scope("budget:admin")
            and event["payload"].get("component") not in principal.components
        ):
            return
        await self.send_json(self.frame(event["kind"], event["payload"], {"source": "OPERATOR"}))

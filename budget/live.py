"""Budget events pushed to subscribed operators over the WebSocket.

A `/ws` client that sends `{"type": "SUBSCRIBE", "payload": {"budget": true}}` joins the
channel-layer group `BUDGET_GROUP`; the request path publishes here, and every process's
consumer forwards the event as a frame of the event's type (through Redis when
`REDIS_URL` is set, so an operator connected to one worker sees what all workers do):

- `BUDGET_WARNING`: a served request produced budget warnings (a warn-policy limit at
  80% or crossed, max_tokens lowered to fit, a cheaper model chosen to stay within an
  enforced limit). Payload: `warnings` plus who asked (`context`, `component`,
  `task_type`) and what answered (`provider`, `model`).
- `BUDGET_EXCEEDED`: an enforced limit refused a request (the client got 402
  `budget_exceeded`). Payload: the refusal's `error`, `code` and details (`period`,
  `scope`, `limit`, `spent`, `reserved`, `needed`, `provider`, `model`) plus who asked.

Publishing is best effort: a channel-layer outage never fails a request.
"""

import logging
from typing import Any

from channels.layers import get_channel_layer
from django.utils import timezone

logger = logging.getLogger("budget")

BUDGET_GROUP = "budget.operators"
BUDGET_WARNING = "BUDGET_WARNING"
BUDGET_EXCEEDED = "BUDGET_EXCEEDED"
# The consumer method that receives these events (channels maps "budget.event" to it).
EVENT_TYPE = "budget.event"


def _now() -> str:
    return timezone.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def abudget_publish(*, kind: str, payload: dict[str, Any]) -> None:
    """Send one budget event to every subscribed operator, on any process."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(
            BUDGET_GROUP,
            {"type": EVENT_TYPE, "kind": kind, "payload": {**payload, "timestamp": _now()}},
        )
    except Exception:
        logger.warning("could not publish a %s to budget subscribers", kind, exc_info=True)


async def abudget_publish_warnings(
    *, warnings: list[str], origin: dict[str, Any], provider: str, model: str
) -> None:
    if warnings:
        await abudget_publish(
            kind=BUDGET_WARNING,
            payload={"warnings": list(warnings), **origin, "provider": provider, "model": model},
        )


async def abudget_publish_exceeded(*, body: dict[str, Any], origin: dict[str, Any]) -> None:
    """`body` is the refusal's error body (`BudgetExceeded.as_body()`)."""
    await abudget_publish(kind=BUDGET_EXCEEDED, payload={**body, **origin})

"""A small usage ledger for the console's tests (admin, dashboard, browser), built through
the budget services: reserve, then settle, at chosen times.

    yesterday  ergon  anthropic/claude-3-haiku-20240307  ergon_default (active version)  x2 ok
               ergon  openai/gpt-4o                       no prompt                       x1 ok
               telos  anthropic/claude-3-haiku-20240307  no prompt                       x1 ok
    today      ergon  anthropic/claude-3-haiku-20240307  latencies 100, 200, ... 1000 ms  x10 ok
               ergon  openai/gpt-4o                       "upstream said 503: overloaded" x1 error

Costs (the seeded prices, nano-USD per token): haiku 250 in / 1250 out, gpt-4o 10000 in /
30000 out. Each attempt uses 1000 input and 100 output tokens: haiku $0.000375,
gpt-4o $0.013.
"""

import datetime as dt
import uuid
from dataclasses import dataclass

import time_machine

from budget import selectors
from budget.models import UsageRecord
from budget.services import budget_reserve, budget_settle
from llm.providers.base import Usage
from prompts.models import Prompt

HAIKU = ("anthropic", "claude-3-haiku-20240307")
GPT4O = ("openai", "gpt-4o")
FAILURE = "upstream said 503: overloaded"
HAIKU_COST = "0.000375"
GPT4O_COST = "0.013"


def charge(
    *,
    target: tuple[str, str],
    component: str,
    status: str = "ok",
    latency_ms: int = 100,
    prompt_version_id: int | None = None,
    error: str = "",
) -> UsageRecord:
    provider, model = target
    reservation = budget_reserve(
        request_id=uuid.uuid4(),
        attempt=1,
        provider=provider,
        model=model,
        component=component,
        task_type="chat",
        context_id=f"{component}:default",
        input_tokens=1000,
        max_tokens=100,
        prompt_version_id=prompt_version_id,
    )
    return budget_settle(
        reservation_id=reservation.reservation_id,
        usage=None if status == "error" else Usage(1000, 100),
        status=status,
        latency_ms=latency_ms,
        error=error,
    )


@dataclass(frozen=True)
class Ledger:
    yesterday: dt.date
    ergon_prompt_version_id: int
    failure: UsageRecord


def seed_ledger() -> Ledger:
    today = selectors.local_today()
    yesterday = today - dt.timedelta(days=1)
    start, _ = selectors.day_range(day=yesterday)
    version_id = Prompt.objects.get(slug="ergon_default").active_version_id
    assert version_id is not None
    # A minute into yesterday: on yesterday's calendar day, and (unless the tests run in
    # the first minute after midnight) outside the dashboard's last 24 hours, whatever
    # the time of day. At noon, a run before noon counted them as today's.
    with time_machine.travel(start + dt.timedelta(minutes=1), tick=False):
        charge(target=HAIKU, component="ergon", prompt_version_id=version_id)
        charge(target=HAIKU, component="ergon", prompt_version_id=version_id)
        charge(target=GPT4O, component="ergon")
        charge(target=HAIKU, component="telos")
    for i in range(1, 11):
        charge(target=HAIKU, component="ergon", latency_ms=i * 100)
    failure = charge(target=GPT4O, component="ergon", status="error", error=FAILURE)
    return Ledger(yesterday=yesterday, ergon_prompt_version_id=version_id, failure=failure)

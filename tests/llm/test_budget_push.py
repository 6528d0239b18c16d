"""Budget warnings and refusals pushed to operators subscribed over /ws
(`SUBSCRIBE` with `payload.budget: true`; budget.live)."""

from typing import Any

from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from budget import services as budget_services
from budget.models import UsageRecord
from llm.gateway import LLMRequest, llm_complete
from llm.providers.base import ChatMessage
from tests.llm.test_consumers import ConsumerTestCase, typing_off

# 1 micro-USD per token in and out: a short request costs well under a cent.
PRICE = 1000


def priced_with_limit(*, enforcement: str, limit_nanos: int) -> None:
    budget_services.model_price_set(
        provider="simulated",
        model="simulated-standard",
        input_price=PRICE,
        output_price=PRICE,
        source="test",
    )
    budget_services.budget_limit_set(
        period="daily", limit_nanos=limit_nanos, enforcement=enforcement
    )


apriced_with_limit = sync_to_async(priced_with_limit)


def request_frame(context: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "LLM_REQUEST",
        "source": "UI",
        "payload": {"message": "How much is this?", "context": context, **extra},
    }


class BudgetPushTests(ConsumerTestCase):
    async def operator(self) -> WebsocketCommunicator:
        ws = await self.connect()
        await ws.send_json_to({"type": "SUBSCRIBE", "source": "OPS", "payload": {"budget": True}})
        ack = await ws.receive_json_from(timeout=5)
        assert ack["type"] == "RESPONSE"
        assert ack["payload"] == {"status": "subscribed", "budget": True}
        assert ack["target"] == "OPS"
        return ws

    async def test_a_warn_limit_crossing_reaches_the_operator(self) -> None:
        await apriced_with_limit(enforcement="warn", limit_nanos=1000)
        operator = await self.operator()
        user = await self.connect()

        await user.send_json_to(request_frame("ergon:costly", task_type="chat"))
        frames = await self.until(user, typing_off)
        pushed = await operator.receive_json_from(timeout=5)
        await user.disconnect()
        await operator.disconnect()

        done = next(f for f in frames if f["payload"].get("done"))
        assert pushed["type"] == "BUDGET_WARNING"
        assert pushed["source"] == "LLM"
        payload = pushed["payload"]
        assert payload["warnings"] == done["payload"]["budget_warnings"]
        assert "daily budget for all providers crossed" in payload["warnings"][0]
        assert payload["context"] == "ergon:costly"
        assert payload["component"] == "ergon"
        assert payload["task_type"] == "chat"
        assert (payload["provider"], payload["model"]) == ("simulated", "simulated-standard")
        assert payload["timestamp"].endswith("Z")

    async def test_an_enforced_refusal_reaches_the_operator(self) -> None:
        await apriced_with_limit(enforcement="enforce", limit_nanos=1000)
        operator = await self.operator()
        user = await self.connect()

        await user.send_json_to(request_frame("ergon:refused"))
        frames = await self.until(user, typing_off)
        pushed = await operator.receive_json_from(timeout=5)
        await user.disconnect()
        await operator.disconnect()

        error = next(f for f in frames if f["type"] == "ERROR")
        assert error["payload"]["code"] == "budget_exceeded"
        assert pushed["type"] == "BUDGET_EXCEEDED"
        payload = pushed["payload"]
        assert payload["code"] == "budget_exceeded"
        assert payload["error"] == error["payload"]["error"]
        assert (payload["period"], payload["scope"], payload["limit"]) == (
            "daily",
            "all",
            "0.000001",
        )
        assert payload["context"] == "ergon:refused"
        assert payload["provider"] == "simulated"
        assert not await UsageRecord.objects.aexists()

    async def test_a_request_that_did_not_come_over_the_socket_is_pushed_too(self) -> None:
        await apriced_with_limit(enforcement="warn", limit_nanos=1000)
        operator = await self.operator()

        result = await llm_complete(
            LLMRequest(messages=(ChatMessage("user", "from REST"),), context_id="rest:one")
        )
        pushed = await operator.receive_json_from(timeout=5)
        await operator.disconnect()

        assert pushed["type"] == "BUDGET_WARNING"
        assert pushed["payload"]["warnings"] == list(result.budget_warnings)
        assert pushed["payload"]["context"] == "rest:one"

    async def test_requests_without_budget_news_push_nothing(self) -> None:
        await apriced_with_limit(enforcement="warn", limit_nanos=10**12)
        operator = await self.operator()
        user = await self.connect()

        await user.send_json_to(request_frame("ergon:cheap"))
        frames = await self.until(user, typing_off)
        nothing = await operator.receive_nothing(timeout=0.3)
        await user.disconnect()
        await operator.disconnect()

        assert (
            next(f for f in frames if f["payload"].get("done"))["payload"]["budget_warnings"] == []
        )
        assert nothing is True

    async def test_unsubscribed_and_context_only_sockets_get_no_budget_frames(self) -> None:
        await apriced_with_limit(enforcement="warn", limit_nanos=1000)
        operator = await self.operator()
        await operator.send_json_to({"type": "UNSUBSCRIBE", "payload": {"budget": True}})
        ack = await operator.receive_json_from(timeout=5)
        watcher = await self.connect()
        await watcher.send_json_to({"type": "SUBSCRIBE", "payload": {"context": "ergon:w"}})
        await watcher.receive_json_from(timeout=5)

        await llm_complete(
            LLMRequest(messages=(ChatMessage("user", "hello"),), context_id="ergon:w")
        )
        watched = [await watcher.receive_json_from(timeout=5) for _ in range(2)]
        operator_quiet = await operator.receive_nothing(timeout=0.3)
        watcher_quiet = await watcher.receive_nothing(timeout=0.3)
        await operator.disconnect()
        await watcher.disconnect()

        assert ack["payload"] == {"status": "unsubscribed", "budget": True}
        assert [f["payload"]["role"] for f in watched] == ["user", "assistant"]
        assert operator_quiet is True
        assert watcher_quiet is True

    async def test_one_subscribe_frame_may_ask_for_budget_and_a_context(self) -> None:
        ws = await self.connect()
        await ws.send_json_to(
            {"type": "SUBSCRIBE", "payload": {"budget": True, "context": "ergon:both"}}
        )
        acks = [await ws.receive_json_from(timeout=5) for _ in range(2)]
        await ws.disconnect()

        assert [a["payload"] for a in acks] == [
            {"status": "subscribed", "budget": True},
            {"status": "subscribed", "context": "ergon:both"},
        ]

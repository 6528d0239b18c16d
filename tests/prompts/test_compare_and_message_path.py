"""POST /prompts/compare (with and without a run) and the system prompt that reaches the
upstream on the message path. Async endpoints with the ORM: Django TestCase (R22)."""

import json
from collections.abc import AsyncIterator
from typing import Any
from unittest import mock

from django.test import TestCase

from contexts.models import Context
from llm.providers.base import CompletionRequest, StreamEvent
from llm.providers.simulated import SimulatedProvider
from prompts import services
from prompts.models import Prompt
from rhetor_site.tokens import estimate_tokens


class RecordingUpstream:
    """Wraps the simulated provider and records every CompletionRequest it is sent."""

    def __init__(self) -> None:
        self.requests: list[CompletionRequest] = []
        self._original = SimulatedProvider.stream

    def patch(self) -> Any:
        recorder = self

        async def stream(
            self: SimulatedProvider, request: CompletionRequest
        ) -> AsyncIterator[StreamEvent]:
            recorder.requests.append(request)
            async for event in recorder._original(self, request):
                yield event

        return mock.patch.object(SimulatedProvider, "stream", stream)


class PromptTestCase(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.reviewer = services.prompt_create(
            name="Code reviewer",
            component="ergon",
            task_type="code",
            content="You review {{ language }} code.\nBe strict.",
        )
        cls.terse = services.prompt_create(
            name="Terse", component="ergon", content="Answer in one line about {{ topic }}."
        )

    def setUp(self) -> None:
        self.upstream = RecordingUpstream()
        patcher = self.upstream.patch()
        patcher.start()
        self.addCleanup(patcher.stop)

    async def post(self, path: str, body: Any) -> Any:
        return await self.async_client.post(path, json.dumps(body), content_type="application/json")


class CompareTests(PromptTestCase):
    async def test_compare_shows_both_prompts_with_a_diff_and_metrics(self) -> None:
        response = await self.post(
            "/prompts/compare", {"prompt_id1": "code_reviewer", "promptId2": "terse"}
        )

        assert response.status_code == 200
        body = response.json()
        assert body["prompt1"] == {
            "prompt_id": "code_reviewer",
            "name": "Code reviewer",
            "component": "ergon",
            "version": 1,
            "version_id": self.reviewer.active_version_id,
            "content": "You review {{ language }} code.\nBe strict.",
            "variables": ["language"],
            "length": 42,
            "tokens": estimate_tokens("You review {{ language }} code.\nBe strict."),
        }
        assert (body["prompt2"]["prompt_id"], body["prompt2"]["variables"]) == ("terse", ["topic"])
        assert body["diff_lines"] == [
            "--- code_reviewer v1",
            "+++ terse v1",
            "@@ -1,2 +1 @@",
            "-You review {{ language }} code.",
            "-Be strict.",
            "+Answer in one line about {{ topic }}.",
        ]
        assert body["diff"] == "\n".join(body["diff_lines"])
        assert body["metrics"] == {
            "length_difference": 37 - 42,
            "token_difference": body["prompt2"]["tokens"] - body["prompt1"]["tokens"],
            "shared_variables": [],
            "only_in_prompt1": ["language"],
            "only_in_prompt2": ["topic"],
            "identical": False,
        }
        assert body["results"] is None
        assert self.upstream.requests == []

    async def test_compare_two_versions_of_one_prompt(self) -> None:
        await services.aprompt_version_create(
            prompt=self.reviewer, content="You review {{ language }} code.\nBe kind."
        )

        body = (
            await self.post(
                "/prompts/compare",
                {"prompt_id1": "code_reviewer", "prompt_id2": "code_reviewer", "version2": 2},
            )
        ).json()

        assert body["diff_lines"][2:] == [
            "@@ -1,2 +1,2 @@",
            " You review {{ language }} code.",
            "-Be strict.",
            "+Be kind.",
        ]
        assert body["metrics"]["shared_variables"] == ["language"]

    async def test_compare_unknown_prompt_is_404(self) -> None:
        response = await self.post("/prompts/compare", {"prompt_id1": "terse", "prompt_id2": "x"})

        assert response.status_code == 404
        assert response.json()["code"] == "prompt_not_found"

    async def test_compare_refuses_unknown_fields(self) -> None:
        response = await self.post(
            "/prompts/compare", {"prompt_id1": "terse", "prompt_id2": "terse", "runn": True}
        )

        assert response.status_code == 422

    async def test_run_needs_a_message_and_sends_nothing_without_one(self) -> None:
        response = await self.post(
            "/prompts/compare", {"prompt_id1": "terse", "prompt_id2": "terse", "run": True}
        )

        assert response.status_code == 422
        assert response.json()["field"] == "message"
        assert self.upstream.requests == []

    async def test_run_answers_each_prompt_on_the_same_route(self) -> None:
        response = await self.post(
            "/prompts/compare",
            {
                "prompt_id1": "code_reviewer",
                "prompt_id2": "terse",
                "run": True,
                "message": "Is this fine?",
                "variables": {"language": "Python", "topic": "style"},
            },
        )

        assert response.status_code == 200
        results = response.json()["results"]
        assert [results[k]["prompt_id"] for k in ("prompt1", "prompt2")] == [
            "code_reviewer",
            "terse",
        ]
        for key in ("prompt1", "prompt2"):
            assert results[key]["provider"] == "simulated"
            assert results[key]["model"] == "simulated-standard"
            assert 'You said: "Is this fine?"' in results[key]["message"]
            assert results[key]["usage"]["input_tokens"] > 0
            assert results[key]["error"] is None
        assert [r.system for r in self.upstream.requests] == [
            "You review Python code.\nBe strict.",
            "Answer in one line about style.",
        ]

    async def test_run_stores_no_conversation(self) -> None:
        before = await Context.objects.acount()

        await self.post(
            "/prompts/compare",
            {
                "prompt_id1": "terse",
                "prompt_id2": "terse",
                "run": True,
                "message": "Hi",
                "variables": {"topic": "x"},
            },
        )

        assert len(self.upstream.requests) == 2
        assert await Context.objects.acount() == before

    async def test_run_of_an_inactive_version_is_refused(self) -> None:
        await services.aprompt_version_create(prompt=self.terse, content="Draft.")

        response = await self.post(
            "/prompts/compare",
            {
                "prompt_id1": "terse",
                "prompt_id2": "terse",
                "version2": 2,
                "run": True,
                "message": "Hi",
            },
        )

        assert response.status_code == 422
        assert response.json()["field"] == "version2"
        assert self.upstream.requests == []

    async def test_run_with_missing_variables_reports_the_error_per_prompt(self) -> None:
        response = await self.post(
            "/prompts/compare",
            {"prompt_id1": "terse", "prompt_id2": "terse", "run": True, "message": "Hi"},
        )

        assert response.status_code == 200
        result = response.json()["results"]["prompt1"]
        assert (result["code"], result["message"]) == ("template_variables_missing", None)
        assert self.upstream.requests == []


class MessagePathTests(PromptTestCase):
    async def test_explicit_prompt_id_reaches_the_upstream_rendered(self) -> None:
        response = await self.post(
            "/message",
            {
                "message": "Review this",
                "context_id": "hermes:x",
                "prompt_id": "code_reviewer",
                "options": {"prompt_variables": {"language": "Go"}},
            },
        )

        assert response.status_code == 200
        assert self.upstream.requests[-1].system == "You review Go code.\nBe strict."

    async def test_without_prompt_id_the_components_default_reaches_the_upstream(self) -> None:
        response = await self.post("/message", {"message": "Hi", "context_id": "hermes:x"})

        assert response.status_code == 200
        assert self.upstream.requests[-1].system.startswith(
            "You are Hermes, the messaging and service-registry hub of Tekton."
        )

    async def test_missing_prompt_variables_fail_the_request_before_the_upstream(self) -> None:
        response = await self.post(
            "/message", {"message": "Hi", "context_id": "ergon:x", "prompt_id": "terse"}
        )

        assert response.status_code == 400
        assert response.json()["missing"] == ["topic"]
        assert self.upstream.requests == []

    async def test_unknown_prompt_id_is_404(self) -> None:
        response = await self.post("/message", {"message": "Hi", "prompt_id": "nope"})

        assert response.status_code == 404
        assert response.json()["code"] == "prompt_not_found"
        assert self.upstream.requests == []

    async def test_activation_and_rollback_change_what_the_next_request_sends(self) -> None:
        ergon = await Prompt.objects.aget(slug="ergon_default")
        draft = await services.aprompt_version_create(prompt=ergon, content="Ergon, edited.")

        await self.post("/message", {"message": "one", "context_id": "ergon:a"})
        await services.aprompt_version_activate(prompt=ergon, version=draft)
        await self.post("/message", {"message": "two", "context_id": "ergon:a"})
        await services.aprompt_rollback(prompt=ergon)
        await self.post("/message", {"message": "three", "context_id": "ergon:a"})

        systems = [r.system for r in self.upstream.requests]
        assert systems[0].startswith("You are Ergon")
        assert systems[1] == "Ergon, edited."
        assert systems[2] == systems[0]

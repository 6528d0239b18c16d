"""RhetorPromptClient against a live Rhetor (a daphne subprocess, real HTTP)."""

import uuid

import pytest

from rhetor.client import (
    Conflict,
    InvalidRequest,
    NotFound,
    RhetorPromptClient,
    get_rhetor_prompt_client,
)

# --- The seed's usage example, exactly as RHETOR_SEED.md writes it -------------------------
# (its import, `from rhetor.client import get_rhetor_prompt_client`, is the one above)


async def example():  # type: ignore[no-untyped-def]
    client = await get_rhetor_prompt_client()

    try:
        template = await client.create_prompt_template(
            name="Documentation Template",
            template="Write documentation for {component} that explains {feature}.",
            variables=["component", "feature"],
            description="Template for generating documentation",
        )

        rendered = await client.render_prompt(
            template_id=template["template_id"],
            variables={"component": "Rhetor", "feature": "model routing"},
        )

        print(rendered)  # noqa: T201

    finally:
        await client.close()


# -------------------------------------------------------------------------------------------


async def test_the_seed_usage_example_works_as_written(
    live_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RHETOR_URL", live_url)
    monkeypatch.delenv("HERMES_API_URL", raising=False)

    await example()

    assert (
        capsys.readouterr().out == "Write documentation for Rhetor that explains model routing.\n"
    )


def unique(name: str) -> str:
    return f"{name} {uuid.uuid4().hex[:8]}"


async def test_templates_list_get_update_and_render_a_version(live_url: str) -> None:
    name = unique("Greeting")
    async with RhetorPromptClient(live_url) as client:
        created = await client.create_prompt_template(
            name=name,
            template="Hello {{ who }}.",
            category="user",
            tags=["client-test"],
        )
        template_id = created["template_id"]
        updated = await client.update_template(
            template_id, "Good morning {who}!", variables=["who"], description="Polite"
        )
        listed = await client.list_templates(category="user", tag="client-test")
        first = await client.get_template(template_id, version_id=created["version_id"])
        latest = await client.render_prompt(template_id, {"who": "Ergon"})
        original = await client.render_prompt(
            template_id, {"who": "Ergon"}, version_id=created["version_id"]
        )

    assert updated["version"] == 2
    assert updated["description"] == "Polite"
    assert template_id in [t["template_id"] for t in listed]
    assert first["content"] == "Hello {{ who }}."
    assert latest == "Good morning Ergon!"
    assert original == "Hello Ergon."


async def test_render_with_a_missing_variable_raises_invalid_request(live_url: str) -> None:
    async with RhetorPromptClient(live_url) as client:
        created = await client.create_prompt_template(
            name=unique("Needs"), template="{a} and {b}", variables=["a", "b"]
        )
        with pytest.raises(InvalidRequest) as caught:
            await client.render_prompt(created["template_id"], {"a": "1"})

    assert caught.value.status == 400
    assert caught.value.code == "template_variables_missing"
    assert caught.value.body["missing"] == ["b"]
    assert "b" in caught.value.error


async def test_prompts_create_list_get_and_update(live_url: str) -> None:
    component = f"comp{uuid.uuid4().hex[:6]}"
    async with RhetorPromptClient(live_url) as client:
        created = await client.create_prompt(
            name=unique("Planner"), component=component, content="You plan.", tags=["t"]
        )
        updated = await client.update_prompt(created["prompt_id"], "You plan carefully.")
        listed = await client.list_prompts(component=component)
        first = await client.get_prompt(created["prompt_id"], version=1)
        ergon_default = await client.get_prompt("ergon_default")

    assert updated["active_version"] == 2
    assert [p["prompt_id"] for p in listed] == [created["prompt_id"]]
    assert first["content"] == "You plan."
    assert ergon_default["is_default"] is True


async def test_personality_and_generated_prompt(live_url: str) -> None:
    name = unique("Steady")
    async with RhetorPromptClient(live_url) as client:
        personality = await client.create_personality(
            name=name,
            traits={"patient": True, "verbosity": "low"},
            tone="calm",
            examples=[{"input": "Status?", "output": "All green."}],
        )
        fetched = await client.get_personality(personality["personality_id"])
        everyone = await client.list_personalities()
        generated = await client.generate_prompt(
            task="Plan the next release.",
            context={"deadline": "Friday"},
            personality_id=personality["personality_id"],
            component="ergon",
        )
        chat = await client.generate_prompt(task="Say hi.", component="ergon", format="chat")
        with pytest.raises(Conflict) as duplicate:
            await client.create_personality(name=name, traits=["x"])

    assert fetched["traits"] == ["patient", "verbosity: low"]
    assert name in [p["name"] for p in everyone]
    assert generated["prompt"].startswith("You are Ergon")
    assert f"Personality: {name}" in generated["prompt"]
    assert "- deadline: Friday" in generated["prompt"]
    assert generated["prompt"].endswith("Task:\nPlan the next release.")
    assert chat["messages"][-1] == {"role": "user", "content": "Say hi."}
    assert duplicate.value.code == "personality_exists"


async def test_unknown_ids_raise_not_found_with_the_servers_code(live_url: str) -> None:
    async with RhetorPromptClient(live_url) as client:
        with pytest.raises(NotFound) as template:
            await client.get_template("no_such_template")
        with pytest.raises(NotFound) as personality:
            await client.generate_prompt(task="t", personality_id="no such personality")

    assert template.value.code == "template_not_found"
    assert template.value.status == 404
    assert personality.value.code == "personality_not_found"


async def test_factory_finds_rhetor_through_hermes(
    live_url: str, fake_hermes, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_hermes.components = [
        {"name": "engram", "endpoint": "http://127.0.0.1:9"},
        {
            "name": "rhetor",
            "component_id": "rhetor-1",
            "endpoint": live_url,
            "metadata": {"endpoints": {"http": live_url, "ws": live_url + "/ws"}},
        },
    ]
    monkeypatch.delenv("RHETOR_URL", raising=False)
    monkeypatch.setenv("HERMES_API_URL", fake_hermes.url)

    client = await get_rhetor_prompt_client()
    try:
        prompts = await client.list_prompts(component="ergon")
    finally:
        await client.close()

    assert client.base_url == live_url
    assert fake_hermes.requests == ["/api/components"]
    assert "ergon_default" in [p["prompt_id"] for p in prompts]
    assert client.closed

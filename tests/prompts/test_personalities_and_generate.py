"""Personalities (`/personalities`) and prompt generation (`POST /prompts/generate`)."""

import pytest

from prompts import services
from prompts.models import Personality
from prompts.selectors import personality_text, prompt_generate

ERGON_OPENER = "You are Ergon, the agent and workflow framework of Tekton."


@pytest.fixture
def calm(db) -> Personality:
    return services.personality_create(
        name="Calm", traits=["patient", "precise"], tone="warm", description="Never hurried."
    )


# --- Personalities -------------------------------------------------------------------------


def test_create_personality_returns_it_with_an_id(client_api, db) -> None:
    response = client_api.post(
        "/personalities",
        json={
            "name": "Mentor",
            "traits": ["encouraging"],
            "tone": "friendly",
            "description": "Explains the why.",
            "examples": ["Good question: let us look at it together."],
        },
    )

    assert response.status_code == 201
    body = response.json()
    stored = Personality.objects.get(name="Mentor")
    assert body["personality_id"] == stored.pk
    assert body["traits"] == ["encouraging"]
    assert body["tone"] == "friendly"
    assert body["examples"] == ["Good question: let us look at it together."]
    assert body["prompt_count"] == 0


def test_create_personality_accepts_the_original_clients_trait_object(client_api, db) -> None:
    response = client_api.post(
        "/personalities",
        json={
            "name": "Terse",
            "traits": {"direct": True, "verbose": False, "verbosity": "low"},
            "examples": [{"input": "Status?", "output": "Green."}],
        },
    )

    assert response.status_code == 201
    assert response.json()["traits"] == ["direct", "verbosity: low"]
    assert response.json()["examples"] == ["Status? -> Green."]


def test_duplicate_personality_name_is_a_409_and_creates_nothing(client_api, calm) -> None:
    response = client_api.post("/personalities", json={"name": "Calm", "tone": "cold"})

    assert response.status_code == 409
    assert response.json()["code"] == "personality_exists"
    assert Personality.objects.count() == 1
    assert Personality.objects.get().tone == "warm"


def test_personality_without_name_is_a_422(client_api, db) -> None:
    response = client_api.post("/personalities", json={"tone": "warm"})

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert not Personality.objects.exists()


def test_list_and_get_personalities_by_id_or_name(client_api, calm) -> None:
    services.personality_create(name="Bold")
    services.prompt_create(name="p", component="c", content="Base.", personality=calm)

    listed = client_api.get("/personalities").json()
    by_id = client_api.get(f"/personalities/{calm.pk}").json()
    by_name = client_api.get("/personalities/Calm").json()
    missing = client_api.get("/personalities/Nobody")

    assert listed["count"] == 2
    assert [p["name"] for p in listed["personalities"]] == ["Bold", "Calm"]
    assert by_id == by_name
    assert by_id["prompt_count"] == 1
    assert missing.status_code == 404
    assert missing.json()["code"] == "personality_not_found"


# --- Generation ----------------------------------------------------------------------------


def test_generate_composes_component_prompt_personality_context_and_task(db, calm) -> None:
    generated = prompt_generate(
        task="Plan the release of version 2.",
        component="ergon",
        personality_id="Calm",
        context={"deadline": "Friday", "team": ["ana", "bo"]},
    )

    assert generated.prompt_id == "ergon_default"
    assert generated.prompt.startswith(ERGON_OPENER)
    assert generated.sections[1] == personality_text(calm)
    assert generated.sections[2] == 'Context:\n- deadline: Friday\n- team: ["ana", "bo"]'
    assert generated.prompt.endswith("Task:\nPlan the release of version 2.")
    assert generated.messages == []


def test_generate_chat_format_puts_the_task_in_the_users_turn(db) -> None:
    generated = prompt_generate(task="Summarise the logs.", component="ergon", format="chat")

    assert "Task:" not in generated.system
    assert generated.messages == [
        {"role": "system", "content": generated.system},
        {"role": "user", "content": "Summarise the logs."},
    ]


def test_generate_renders_the_task_prompt_with_context_values(db, reviewer) -> None:
    generated = prompt_generate(
        task="Review this diff.", component="ergon", task_type="code", context={"language": "Go"}
    )

    assert generated.prompt_id == reviewer.slug
    assert generated.prompt.startswith("You review Go code.")


def test_generate_reports_missing_prompt_variables(client_api, reviewer) -> None:
    response = client_api.post(
        "/prompts/generate",
        json={"task": "Review this diff.", "component": "ergon", "taskType": "code"},
    )

    assert response.status_code == 400
    assert response.json()["code"] == "template_variables_missing"
    assert response.json()["missing"] == ["language"]


def test_generate_uses_the_prompts_own_personality_unless_one_is_given(db, calm) -> None:
    bold = services.personality_create(name="Bold", tone="brisk")
    services.prompt_create(
        name="Planner", component="sophia", content="You plan.", is_default=True, personality=calm
    )

    own = prompt_generate(task="t", component="sophia")
    chosen = prompt_generate(task="t", component="sophia", personality_id=bold.pk)

    assert personality_text(calm) in own.prompt
    assert personality_text(bold) in chosen.prompt
    assert "Calm" not in chosen.prompt


def test_generate_for_a_component_without_prompts_names_it(db) -> None:
    generated = prompt_generate(task="Help.", component="new_thing")

    assert generated.prompt_id is None
    assert generated.prompt == (
        "You are New Thing, a component of Tekton, a multi-AI system.\n\nTask:\nHelp."
    )


def test_generate_endpoint_answers_the_composed_prompt(client_api, calm) -> None:
    response = client_api.post(
        "/prompts/generate",
        json={"task": "Draft the changelog.", "component": "ergon", "personalityId": calm.pk},
    )

    assert response.status_code == 200
    body = response.json()
    assert body["prompt"].startswith(ERGON_OPENER)
    assert body["prompt"].endswith("Task:\nDraft the changelog.")
    assert body["personality_id"] == calm.pk
    assert body["personality"] == "Calm"
    assert body["prompt_version"] == 1
    assert body["length"] == len(body["prompt"])
    assert body["tokens"] > 0


@pytest.mark.parametrize(
    ("_case", "body", "status", "code"),
    [
        ("unknown personality", {"task": "t", "personality_id": "nobody"}, 404, None),
        ("unknown prompt", {"task": "t", "prompt_id": "nope"}, 404, "prompt_not_found"),
        ("bad format", {"task": "t", "format": "haiku"}, 422, "validation_error"),
        ("empty task", {"task": ""}, 422, "validation_error"),
    ],
)
def test_generate_rejects_bad_input(client_api, db, _case, body, status, code) -> None:
    response = client_api.post("/prompts/generate", json=body)

    assert response.status_code == status
    assert response.json()["code"] == (code or "personality_not_found")


def test_personality_with_a_nul_character_is_a_422(client_api, db) -> None:
    response = client_api.post("/personalities", json={"name": "x", "examples": ["a\x00"]})

    assert response.status_code == 422
    assert "NUL" in response.json()["error"]
    assert not Personality.objects.exists()

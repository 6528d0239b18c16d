"""system_prompt_resolve: what the message path sends as the system prompt."""

import pytest

from prompts import services
from prompts.errors import PromptNotFound, TemplateVariablesMissing
from prompts.models import Prompt
from prompts.selectors import ResolvedPrompt, prompt_version_list, system_prompt_resolve


def test_explicit_prompt_is_its_active_version_rendered(
    reviewer: Prompt, django_assert_max_num_queries
) -> None:
    with django_assert_max_num_queries(1):
        resolved = system_prompt_resolve(
            prompt_id="code_reviewer",
            component="hermes",
            task_type="chat",
            variables={"language": "Rust"},
        )

    assert resolved == ResolvedPrompt(
        prompt_id="code_reviewer",
        version_id=reviewer.active_version_id,
        version=1,
        text="You review Rust code.",
    )


def test_explicit_prompt_uses_the_active_version_not_the_latest(reviewer: Prompt) -> None:
    services.prompt_version_create(prompt=reviewer, content="Draft {{ language }}")

    resolved = system_prompt_resolve(
        prompt_id="code_reviewer", component=None, task_type=None, variables={"language": "Go"}
    )

    assert resolved is not None
    assert (resolved.version, resolved.text) == (1, "You review Go code.")


def test_unknown_prompt_id_is_a_404_error(db) -> None:
    with pytest.raises(PromptNotFound) as caught:
        system_prompt_resolve(prompt_id="nope", component="ergon", task_type=None, variables=None)

    assert (caught.value.status, caught.value.code) == (404, "prompt_not_found")


def test_missing_variables_list_every_name(db) -> None:
    services.prompt_create(name="two", component="x", content="{{ a }} {{ b }}")

    with pytest.raises(TemplateVariablesMissing) as caught:
        system_prompt_resolve(prompt_id="two", component=None, task_type=None, variables={})

    assert caught.value.as_body()["missing"] == ["a", "b"]


def test_without_prompt_id_the_components_default_is_used(
    db, django_assert_max_num_queries
) -> None:
    with django_assert_max_num_queries(1):
        resolved = system_prompt_resolve(
            prompt_id=None, component="ergon", task_type="chat", variables=None
        )

    assert resolved is not None
    assert resolved.prompt_id == "ergon_default"
    assert resolved.text.startswith("You are Ergon, the agent and workflow framework of Tekton.")


def test_a_prompt_for_the_component_and_task_type_wins_over_the_default(reviewer) -> None:
    resolved = system_prompt_resolve(
        prompt_id=None, component="ergon", task_type="code", variables={"language": "C"}
    )

    assert resolved is not None
    assert (resolved.prompt_id, resolved.text) == ("code_reviewer", "You review C code.")


def test_component_without_prompts_resolves_to_none(db) -> None:
    assert (
        system_prompt_resolve(prompt_id=None, component="nobody", task_type=None, variables=None)
        is None
    )
    nothing = system_prompt_resolve(prompt_id=None, component=None, task_type=None, variables=None)
    assert nothing is None


def test_personality_is_appended_as_plain_text(db) -> None:
    personality = services.personality_create(
        name="Calm", traits=["patient", "precise"], tone="warm", examples=["Let us see {{ x }}."]
    )
    services.prompt_create(name="p", component="c", content="Base.", personality=personality)

    resolved = system_prompt_resolve(prompt_id="p", component=None, task_type=None, variables=None)

    assert resolved is not None
    assert resolved.text == (
        "Base.\n\nPersonality: Calm\nTone: warm\nTraits: patient, precise\n"
        "Examples of how you speak:\n- Let us see {{ x }}."
    )


def test_version_list_marks_the_active_version(reviewer: Prompt) -> None:
    services.prompt_version_create(prompt=reviewer, content="two")

    rows = [(v.version, v.is_active) for v in prompt_version_list(prompt=reviewer)]

    assert rows == [(2, False), (1, True)]

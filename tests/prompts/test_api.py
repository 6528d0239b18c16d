"""Template and prompt endpoints (TEKTON_CONTRACT.md, "Templates and prompts")."""

import json

import pytest
from django.test import Client

from prompts import services
from prompts.models import Prompt, PromptActivation, PromptVersion, Template, TemplateVersion

TEMPLATE_SUMMARY_KEYS = {
    "template_id",
    "name",
    "category",
    "description",
    "variables",
    "tags",
    "version_count",
    "last_updated",
}
PROMPT_SUMMARY_KEYS = {
    "prompt_id",
    "name",
    "component",
    "task_type",
    "description",
    "tags",
    "is_default",
    "parent_id",
    "version_count",
    "last_updated",
    "active_version",
    "active_version_id",
}


# --- Templates ---------------------------------------------------------------------------


def test_list_templates_filters_by_category_and_tag(client_api, greeting) -> None:
    services.template_create(name="Sys", content="s", category="system", tags=["other"])

    everything = client_api.get("/templates").json()
    by_category = client_api.get("/templates?category=user").json()
    by_tag = client_api.get("/templates?tag=greet").json()

    assert everything["count"] == 2
    assert set(everything["templates"][0]) == TEMPLATE_SUMMARY_KEYS
    assert [t["template_id"] for t in by_category["templates"]] == ["greeting"]
    assert by_tag["templates"][0] == {
        **by_tag["templates"][0],
        "template_id": "greeting",
        "variables": ["name", "place"],
        "tags": ["greet", "demo"],
        "version_count": 1,
    }
    assert by_tag["count"] == 1


def test_create_template_answers_201_with_its_versions(client_api, db) -> None:
    response = client_api.post(
        "/templates",
        json={
            "name": "Task Brief",
            "content": "Do {{ task }} by {{ deadline }}",
            "category": "task",
            "description": "d",
            "tags": ["t"],
            "metadata": {"source": "test"},
            "variables": {"deadline": {"type": "string", "default": "Friday"}},
            "changeNote": "first",
        },
    )

    assert response.status_code == 201
    body = response.json()
    assert body["template_id"] == "task_brief"
    assert body["variables"] == ["task", "deadline"]
    assert body["version"] == 1
    assert [v["version"] for v in body["versions"]] == [1]
    assert body["current_version"]["metadata"] == {"source": "test"}
    assert body["current_version"]["change_note"] == "first"
    assert body["current_version"]["variable_specs"]["deadline"] == {
        "type": "string",
        "required": False,
        "default": "Friday",
        "description": "",
    }


@pytest.mark.parametrize(
    ("_case", "body", "field"),
    [
        ("_no_name", {"content": "x"}, "name"),
        ("_bad_category", {"name": "n", "content": "x", "category": "secret"}, "category"),
        ("_malformed_placeholder", {"name": "n", "content": "{{ a.b }}"}, "content"),
        ("_bad_variables", {"name": "n", "content": "x", "variables": {"a": 3}}, "variables"),
    ],
)
def test_create_template_validation_names_the_field(client_api, db, _case, body, field) -> None:
    response = client_api.post("/templates", json=body)

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert field in [f["field"] for f in response.json()["fields"]]
    assert Template.objects.exists() is False


def test_get_template_latest_or_a_chosen_version(client_api, greeting) -> None:
    services.template_version_create(template=greeting, content="v2")
    first = greeting.versions.get(version=1)

    latest = client_api.get("/templates/greeting").json()
    chosen = client_api.get(f"/templates/greeting?version_id={first.pk}").json()
    by_number = client_api.get("/templates/greeting?version=1").json()

    assert (latest["version"], latest["content"]) == (2, "v2")
    assert (chosen["version"], chosen["content"]) == (1, first.content)
    assert by_number["version_id"] == first.pk
    assert latest["version_count"] == 2


def test_unknown_template_or_version_is_404(client_api, greeting) -> None:
    missing = client_api.get("/templates/nope")
    no_version = client_api.get("/templates/greeting?version=9")

    assert missing.status_code == 404
    assert missing.json() == {"error": "Template 'nope' not found", "code": "template_not_found"}
    assert no_version.status_code == 404
    assert no_version.json()["code"] == "template_version_not_found"


def test_put_template_adds_a_version(client_api, greeting) -> None:
    response = client_api.put(
        "/templates/greeting",
        json={"content": "Hey {{ name }}", "metadata": {"why": "short"}, "description": "new"},
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["version"], body["content"], body["description"]) == (2, "Hey {{ name }}", "new")
    assert body["variables"] == ["name"]
    assert TemplateVersion.objects.filter(template=greeting).count() == 2
    assert greeting.versions.get(version=1).content == "Hello {{ name }}, welcome to {{ place }}."


def test_put_unknown_template_is_404_and_creates_nothing(client_api, db) -> None:
    response = client_api.put("/templates/nope", json={"content": "x"})

    assert response.status_code == 404
    assert TemplateVersion.objects.exists() is False


def test_delete_template_removes_it_and_its_versions(client_api, greeting) -> None:
    response = client_api.delete("/templates/greeting")

    assert response.status_code == 200
    assert response.json() == {"success": True, "id": "greeting"}
    assert Template.objects.exists() is False
    assert TemplateVersion.objects.exists() is False
    assert client_api.delete("/templates/greeting").status_code == 404


def test_template_versions_newest_first(client_api, greeting) -> None:
    services.template_version_create(template=greeting, content="v2", change_note="note 2")

    body = client_api.get("/templates/greeting/versions").json()

    assert body["template_id"] == "greeting"
    assert body["count"] == 2
    assert [(v["version"], v["change_note"]) for v in body["versions"]] == [
        (2, "note 2"),
        (1, "Initial version"),
    ]


def test_render_template(client_api, greeting) -> None:
    response = client_api.post(
        "/templates/render",
        json={"template_id": "greeting", "variables": {"name": "Ada", "place": "{{ home }}"}},
    )

    assert response.status_code == 200
    assert response.json() == {
        "template_id": "greeting",
        "version_id": greeting.versions.get().pk,
        "version": 1,
        "rendered_content": "Hello Ada, welcome to {{ home }}.",
    }


def test_render_a_chosen_version_in_camel_case(client_api, greeting) -> None:
    services.template_version_create(template=greeting, content="v2 {{ name }}")

    response = client_api.post(
        "/templates/render", json={"templateId": "greeting", "version": 2, "variables": {"name": 1}}
    )

    assert response.json()["rendered_content"] == "v2 1"


def test_render_with_missing_variables_is_400_listing_them(client_api, greeting) -> None:
    response = client_api.post("/templates/render", json={"template_id": "greeting"})

    assert response.status_code == 400
    assert response.json() == {
        "error": "Missing template variables: name, place",
        "code": "template_variables_missing",
        "missing": ["name", "place"],
    }


def test_render_unknown_template_is_404(client_api, db) -> None:
    response = client_api.post("/templates/render", json={"template_id": "nope"})

    assert response.status_code == 404


# --- Prompts -----------------------------------------------------------------------------


def test_list_prompts_includes_the_defaults_and_filters(client_api, reviewer) -> None:
    everything = client_api.get("/prompts").json()
    ergon = client_api.get("/prompts?component=ergon").json()
    tagged = client_api.get("/prompts?tag=review").json()

    assert everything["count"] == 16
    assert set(everything["prompts"][0]) == PROMPT_SUMMARY_KEYS
    assert [p["prompt_id"] for p in ergon["prompts"]] == ["code_reviewer", "ergon_default"]
    assert [p["prompt_id"] for p in tagged["prompts"]] == ["code_reviewer"]


def test_create_prompt_answers_201(client_api, reviewer) -> None:
    response = client_api.post(
        "/prompts",
        json={
            "name": "Ergon Planner",
            "component": "ergon",
            "content": "Plan {{ goal }}.",
            "description": "plans",
            "tags": ["plan"],
            "isDefault": True,
            "parentId": "code_reviewer",
            "metadata": {"m": 1},
        },
    )

    assert response.status_code == 201
    body = response.json()
    assert body["prompt_id"] == "ergon_planner"
    assert (body["is_default"], body["parent_id"]) == (True, "code_reviewer")
    assert (body["active_version"], body["version"], body["variables"]) == (1, 1, ["goal"])
    assert body["current_version"]["is_active"] is True
    assert Prompt.objects.get(slug="ergon_default").is_default is False


def test_create_prompt_with_a_taken_id_is_409(client_api, reviewer) -> None:
    response = client_api.post(
        "/prompts",
        json={"name": "n", "component": "ergon", "content": "c", "prompt_id": "code_reviewer"},
    )

    assert response.status_code == 409
    assert response.json()["code"] == "prompt_exists"
    assert Prompt.objects.filter(name="n").exists() is False


def test_create_prompt_with_unknown_parent_is_404(client_api, db) -> None:
    response = client_api.post(
        "/prompts", json={"name": "n", "component": "ergon", "content": "c", "parent_id": "nope"}
    )

    assert response.status_code == 404
    assert Prompt.objects.filter(name="n").exists() is False


def test_create_prompt_validation_names_the_field(client_api, db) -> None:
    response = client_api.post("/prompts", json={"name": "n", "content": "c"})

    assert response.status_code == 422
    assert response.json()["fields"] == [{"field": "component", "message": "Field required"}]


def test_get_prompt_active_or_chosen_version(client_api, reviewer) -> None:
    services.prompt_version_create(prompt=reviewer, content="draft")

    active = client_api.get("/prompts/code_reviewer").json()
    draft = client_api.get("/prompts/code_reviewer?version=2").json()

    assert (active["version"], active["content"]) == (1, "You review {{ language }} code.")
    assert (draft["version"], draft["current_version"]["is_active"]) == (2, False)
    assert active["version_count"] == 2
    assert client_api.get("/prompts/nope").status_code == 404


def test_put_prompt_adds_an_active_version(client_api, reviewer) -> None:
    response = client_api.put(
        "/prompts/code_reviewer", json={"content": "Review {{ language }}.", "metadata": {"a": 1}}
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["version"], body["active_version"]) == (2, 2)
    assert reviewer.versions.get(version=1).content == "You review {{ language }} code."


def test_put_prompt_can_add_an_inactive_draft(client_api, reviewer) -> None:
    body = client_api.put(
        "/prompts/code_reviewer", json={"content": "Draft", "activate": False}
    ).json()

    assert (body["version"], body["active_version"]) == (2, 1)


def test_delete_prompt(client_api, reviewer) -> None:
    response = client_api.delete("/prompts/code_reviewer")

    assert response.json() == {"success": True, "id": "code_reviewer"}
    assert Prompt.objects.filter(slug="code_reviewer").exists() is False
    assert PromptVersion.objects.filter(prompt__slug="code_reviewer").exists() is False
    assert client_api.delete("/prompts/code_reviewer").status_code == 404


def test_deleting_a_components_default_prompt_is_refused(client_api, db) -> None:
    response = client_api.delete("/prompts/ergon_default")

    assert response.status_code == 409
    assert response.json() == {
        "error": "Prompt 'ergon_default' cannot be deleted: it is the default prompt of "
        "'ergon'; make another prompt the default first",
        "code": "prompt_in_use",
    }
    assert Prompt.objects.filter(slug="ergon_default").exists()


def test_prompt_versions(client_api, reviewer) -> None:
    services.prompt_version_create(prompt=reviewer, content="draft")

    body = client_api.get("/prompts/code_reviewer/versions").json()

    assert (body["prompt_id"], body["active_version"], body["count"]) == ("code_reviewer", 1, 2)
    assert [(v["version"], v["is_active"]) for v in body["versions"]] == [(2, False), (1, True)]


def test_activate_and_roll_back_over_the_api(client_api, reviewer) -> None:
    services.prompt_version_create(prompt=reviewer, content="draft")

    activated = client_api.post("/prompts/code_reviewer/activate", json={"version": 2})
    rolled_back = client_api.post("/prompts/code_reviewer/rollback")

    assert activated.status_code == 200
    assert activated.json() == {
        **activated.json(),
        "prompt_id": "code_reviewer",
        "active_version": 2,
        "previous_version": 1,
        "activated_by": "api",
        "changed": True,
    }
    assert rolled_back.json()["active_version"] == 1
    assert rolled_back.json()["previous_version"] == 2
    assert PromptActivation.objects.filter(prompt=reviewer).count() == 3


def test_activate_errors(client_api, reviewer) -> None:
    unknown_version = client_api.post("/prompts/code_reviewer/activate", json={"version": 7})
    no_version = client_api.post("/prompts/code_reviewer/activate", json={})
    unknown_field = client_api.post("/prompts/code_reviewer/activate", json={"versoin": 1})
    nothing_to_undo = client_api.post("/prompts/code_reviewer/rollback")

    assert unknown_version.status_code == 404
    assert (no_version.status_code, no_version.json()["field"]) == (422, "version")
    assert unknown_field.status_code == 422
    assert (nothing_to_undo.status_code, nothing_to_undo.json()["code"]) == (
        409,
        "nothing_to_roll_back",
    )
    assert PromptActivation.objects.filter(prompt=reviewer).count() == 1


def test_api_through_urls_and_middleware(db) -> None:
    client = Client()

    created = client.post(
        "/templates",
        data=json.dumps({"name": "Smoke", "content": "{{ a }}"}),
        content_type="application/json",
    )
    listed = client.get("/prompts?component=hermes")

    assert created.status_code == 201
    assert listed.status_code == 200
    assert [p["prompt_id"] for p in listed.json()["prompts"]] == ["hermes_default"]

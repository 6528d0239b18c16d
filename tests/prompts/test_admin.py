"""The admin editor, driven through Django's test client as an operator would."""

import uuid

import pytest
from django.urls import reverse

from prompts import services
from prompts.models import Prompt, PromptActivation, PromptVersion, Template, TemplateVersion
from prompts.selectors import system_prompt_resolve

ERGON_V2 = "You are Ergon.\nExecute workflows step by step.\nReport progress every step."


def _prompt_form(prompt: Prompt, **changes: object) -> dict[str, object]:
    """The change form as the browser would post it, with `changes` applied."""
    latest = prompt.versions.order_by("-version").first()
    data: dict[str, object] = {
        "name": prompt.name,
        "component": prompt.component,
        "task_type": prompt.task_type,
        "description": prompt.description,
        "tags": '["' + '", "'.join(prompt.tags) + '"]' if prompt.tags else "[]",
        "parent": prompt.parent_id or "",
        "personality": prompt.personality_id or "",
        "content": latest.content if latest else "",
        "engine": latest.engine if latest else "simple",
        "variables": "null",
        "change_note": "",
        # The read-only inline still posts its management form.
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": "0",
        "versions-MIN_NUM_FORMS": "0",
        "versions-MAX_NUM_FORMS": "0",
    }
    if prompt.is_default:
        data["is_default"] = "on"
    data.update(changes)
    return data


def _change_url(prompt: Prompt) -> str:
    return reverse("admin:prompts_prompt_change", args=[prompt.pk])


def test_prompt_changelist_lists_the_defaults(operator_client) -> None:
    response = operator_client.get(reverse("admin:prompts_prompt_changelist"))

    assert response.status_code == 200
    assert b"ergon_default" in response.content
    assert b"hephaestus_default" in response.content


def test_change_page_has_the_monospace_editor_and_read_only_history(operator_client) -> None:
    ergon = Prompt.objects.get(slug="ergon_default")
    services.prompt_version_create(prompt=ergon, content="draft", change_note="try this")

    response = operator_client.get(_change_url(ergon))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="vLargeTextField rhetor-editor"' in html
    assert "monospace" in html
    assert "try this" in html
    assert "Make this version active" in html
    assert "Compare versions" in html
    assert "Render preview" in html
    # The history is read-only: no editable content field for any existing version.
    assert 'name="versions-0-content"' not in html


def test_operator_edits_diffs_activates_and_rolls_back_ergon_default(operator_client) -> None:
    ergon = Prompt.objects.get(slug="ergon_default")
    original = ergon.active_version

    # Edit: saving creates version 2, not yet active.
    saved = operator_client.post(
        _change_url(ergon), _prompt_form(ergon, content=ERGON_V2, change_note="Shorter")
    )
    assert saved.status_code == 302
    v2 = PromptVersion.objects.get(prompt=ergon, version=2)
    assert (v2.content, v2.change_note, v2.created_by) == (ERGON_V2, "Shorter", "operator")
    ergon.refresh_from_db()
    assert ergon.active_version == original

    # Diff of v1 and v2.
    diff = operator_client.get(
        reverse("admin:prompts_prompt_diff", args=[ergon.pk]) + "?a=1&b=2"
    ).content.decode()
    assert '<span class="remove">-You are Ergon, the agent and workflow framework' in diff
    assert '<span class="add">+Execute workflows step by step.</span>' in diff
    assert "Make v2 active" in diff

    # Activate: the next Ergon request carries the new text.
    activated = operator_client.post(reverse("admin:prompts_prompt_activate", args=[ergon.pk, 2]))
    assert activated.status_code == 302
    resolved = system_prompt_resolve(
        prompt_id=None, component="ergon", task_type="chat", variables=None
    )
    assert resolved is not None
    assert (resolved.version, resolved.text) == (2, ERGON_V2)
    assert PromptActivation.objects.filter(prompt=ergon).first().activated_by == "operator"

    # One click rolls it back.
    rolled_back = operator_client.post(reverse("admin:prompts_prompt_rollback", args=[ergon.pk]))
    assert rolled_back.status_code == 302
    ergon.refresh_from_db()
    assert ergon.active_version == original
    assert PromptVersion.objects.filter(prompt=ergon).count() == 2


def test_saving_with_activate_ticked_makes_the_new_version_active(operator_client) -> None:
    ergon = Prompt.objects.get(slug="ergon_default")

    operator_client.post(_change_url(ergon), _prompt_form(ergon, content="Now.", activate="on"))

    ergon.refresh_from_db()
    assert (ergon.active_version.version, ergon.active_version.content) == (2, "Now.")


def test_saving_without_content_change_creates_no_version(operator_client) -> None:
    ergon = Prompt.objects.get(slug="ergon_default")

    response = operator_client.post(_change_url(ergon), _prompt_form(ergon, description="New"))

    assert response.status_code == 302
    ergon.refresh_from_db()
    assert ergon.description == "New"
    assert ergon.versions.count() == 1


def test_invalid_content_shows_the_error_and_saves_nothing(operator_client) -> None:
    ergon = Prompt.objects.get(slug="ergon_default")

    response = operator_client.post(
        _change_url(ergon), _prompt_form(ergon, content="Hi {{ user.name }}")
    )

    assert response.status_code == 200
    assert "Malformed placeholder {{ user.name }}" in response.content.decode()
    assert ergon.versions.count() == 1


def test_default_prompt_cannot_be_deleted_in_the_admin(operator_client, reviewer) -> None:
    ergon = Prompt.objects.get(slug="ergon_default")
    changelist = reverse("admin:prompts_prompt_changelist")

    refused = operator_client.post(
        reverse("admin:prompts_prompt_delete", args=[ergon.pk]), {"post": "yes"}
    )
    bulk_refused = operator_client.post(
        changelist,
        {"action": "delete_selected", "_selected_action": [ergon.pk, reviewer.pk], "post": "yes"},
    )

    assert (refused.status_code, bulk_refused.status_code) == (403, 403)
    assert Prompt.objects.filter(slug__in=["ergon_default", "code_reviewer"]).count() == 2

    allowed = operator_client.post(
        changelist, {"action": "delete_selected", "_selected_action": [reviewer.pk], "post": "yes"}
    )

    assert allowed.status_code == 302
    assert Prompt.objects.filter(slug="code_reviewer").exists() is False


def test_add_prompt_goes_through_the_service(operator_client, db) -> None:
    response = operator_client.post(
        reverse("admin:prompts_prompt_add"),
        {
            "slug": "",
            "name": "Ergon Coder",
            "component": "ergon",
            "task_type": "code",
            "description": "",
            "tags": "[]",
            "content": "Write {{ language }}.",
            "engine": "simple",
            "variables": '{"language": {"type": "string", "default": "Python"}}',
            "change_note": "first",
            "versions-TOTAL_FORMS": "0",
            "versions-INITIAL_FORMS": "0",
            "versions-MIN_NUM_FORMS": "0",
            "versions-MAX_NUM_FORMS": "0",
        },
    )

    assert response.status_code == 302
    prompt = Prompt.objects.get(slug="ergon_coder")
    assert prompt.active_version.version == 1
    assert prompt.active_version.variable_specs["language"]["default"] == "Python"
    assert prompt.active_version.created_by == "operator"


def test_preview_renders_sample_variables(operator_client, reviewer) -> None:
    url = reverse("admin:prompts_prompt_preview", args=[reviewer.pk])

    page = operator_client.get(url)
    rendered = operator_client.post(
        url, {"version": "1", "variables": '{"language": "<Rust>"}', "engine": "simple"}
    )

    assert page.status_code == 200
    assert "<code>language</code> (any, required)" in page.content.decode()
    assert "<h2>Rendered</h2>" in rendered.content.decode()
    assert "You review &lt;Rust&gt; code." in rendered.content.decode()


def test_preview_shows_every_missing_variable(operator_client, db) -> None:
    prompt = services.prompt_create(name="two", component="x", content="{{ a }} {{ b }}")

    response = operator_client.post(
        reverse("admin:prompts_prompt_preview", args=[prompt.pk]),
        {"version": "1", "variables": "{}", "engine": "simple"},
    )

    html = response.content.decode()
    assert "Missing template variables: a, b" in html
    assert "<li>missing: <code>a</code></li>" in html
    assert "<li>missing: <code>b</code></li>" in html


def test_preview_of_unsaved_content(operator_client, reviewer) -> None:
    response = operator_client.post(
        reverse("admin:prompts_prompt_preview", args=[reviewer.pk]),
        {"content": "{% if x %}yes{% endif %}", "engine": "jinja", "variables": '{"x": true}'},
    )

    assert "yes</pre>" in response.content.decode()


def test_version_admin_is_read_only_for_existing_rows(operator_client, reviewer) -> None:
    version = reviewer.active_version
    url = reverse("admin:prompts_promptversion_change", args=[version.pk])

    page = operator_client.get(url)
    edit = operator_client.post(url, {"content": "rewritten", "change_note": "x"})

    assert page.status_code == 200
    assert edit.status_code == 403
    assert 'name="content"' not in page.content.decode()
    assert PromptVersion.objects.get(pk=version.pk).content == "You review {{ language }} code."
    delete = operator_client.post(
        reverse("admin:prompts_promptversion_delete", args=[version.pk]), {"post": "yes"}
    )
    assert delete.status_code == 403
    assert PromptVersion.objects.filter(pk=version.pk).exists()


def test_version_admin_add_goes_through_the_service(operator_client, reviewer) -> None:
    response = operator_client.post(
        reverse("admin:prompts_promptversion_add"),
        {
            "prompt": reviewer.pk,
            "content": "v2 {{ language }}",
            "engine": "simple",
            "variables": "null",
            "change_note": "added",
            "activate": "on",
        },
    )

    assert response.status_code == 302
    reviewer.refresh_from_db()
    assert (reviewer.active_version.version, reviewer.active_version.created_by) == (2, "operator")


def test_template_add_edit_and_diff(operator_client, db) -> None:
    form = {
        "slug": "",
        "name": "Summary",
        "category": "task",
        "description": "",
        "tags": "[]",
        "content": "Summarise {{ text }}.",
        "engine": "simple",
        "variables": "null",
        "change_note": "",
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": "0",
        "versions-MIN_NUM_FORMS": "0",
        "versions-MAX_NUM_FORMS": "0",
    }
    operator_client.post(reverse("admin:prompts_template_add"), form)
    template = Template.objects.get(slug="summary")

    operator_client.post(
        reverse("admin:prompts_template_change", args=[template.pk]),
        {**form, "content": "Summarise {{ text }} briefly.", "change_note": "brief"},
    )
    diff = operator_client.get(reverse("admin:prompts_template_diff", args=[template.pk]))

    assert list(
        TemplateVersion.objects.filter(template=template).values_list("version", flat=True)
    ) == [2, 1]
    assert '<span class="add">+Summarise {{ text }} briefly.</span>' in diff.content.decode()


@pytest.fixture
def usage_for(db):
    """Two usage records for a prompt version, written straight to the budget ledger."""
    from budget.models import BudgetReservation, ModelPrice, UsageRecord

    def make(version: PromptVersion) -> None:
        price = ModelPrice.objects.create(
            provider="simulated", model="*", input_price=1000, output_price=2000
        )
        for tokens_in, tokens_out in ((10, 20), (5, 5)):
            request_id = uuid.uuid4()
            reservation = BudgetReservation.objects.create(
                request_id=request_id,
                provider="simulated",
                model="simulated-standard",
                input_tokens=tokens_in,
                max_tokens=100,
                reserved_nanos=0,
                price=price,
            )
            UsageRecord.objects.create(
                request_id=request_id,
                reservation=reservation,
                provider="simulated",
                model="simulated-standard",
                prompt_version=version,
                input_tokens=tokens_in,
                output_tokens=tokens_out,
                cost_nanos=tokens_in * 1000 + tokens_out * 2000,
                price=price,
                status="ok",
                source="provider",
            )

    return make


def test_history_shows_usage_per_version(operator_client, reviewer, usage_for) -> None:
    usage_for(reviewer.active_version)
    services.prompt_version_create(prompt=reviewer, content="unused")

    html = operator_client.get(_change_url(reviewer)).content.decode()

    # v1: 2 requests, 40 tokens, 15 * 1000 + 25 * 2000 nano-USD; v2: nothing yet.
    assert "2 / 40 / $0.000065" in html
    assert "0 / 0 / $0.000000" in html


def test_template_delete_in_the_admin_takes_its_versions(operator_client, greeting) -> None:
    response = operator_client.post(
        reverse("admin:prompts_template_delete", args=[greeting.pk]), {"post": "yes"}
    )

    assert response.status_code == 302
    assert Template.objects.filter(slug="greeting").exists() is False
    assert TemplateVersion.objects.exists() is False

"""Every Tekton component gets its default system prompt `<component>_default`
(TEKTON_CONTRACT.md), written for its role, as version 1 and active.

The texts live here, not in app code, so this migration never changes meaning later.
Reversing removes only defaults that were never edited (a single version).
"""

from django.db import migrations
from django.utils import timezone

COMPONENT_PROMPTS: dict[str, tuple[str, str]] = {
    "engram": (
        "Engram",
        "the memory system of Tekton. You store, organise and recall what the other "
        "components and the user have learned across sessions.",
    ),
    "hermes": (
        "Hermes",
        "the messaging and service-registry hub of Tekton. You route messages between "
        "components, keep track of which components are registered and healthy, and "
        "explain delivery problems.",
    ),
    "prometheus": (
        "Prometheus",
        "the planning system of Tekton. You break goals into ordered, checkable steps, "
        "estimate effort and risk, and plan for what could go wrong.",
    ),
    "ergon": (
        "Ergon",
        "the agent and workflow framework of Tekton. You choose and configure agents and "
        "tools for a task, execute workflows step by step and report progress plainly.",
    ),
    "rhetor": (
        "Rhetor",
        "the LLM gateway and prompt engineer of Tekton. You write and improve prompts, "
        "choose suitable models for tasks, and adapt language to each audience.",
    ),
    "telos": (
        "Telos",
        "the requirements system of Tekton. You turn what users ask for into clear, "
        "testable requirements, trace them to goals and point out gaps and conflicts.",
    ),
    "sophia": (
        "Sophia",
        "the learning and evaluation system of Tekton. You measure how components "
        "perform, design experiments and recommend improvements backed by evidence.",
    ),
    "athena": (
        "Athena",
        "the knowledge graph of Tekton. You model entities and their relationships, "
        "answer questions from the graph and say which facts an answer rests on.",
    ),
    "synthesis": (
        "Synthesis",
        "the execution engine of Tekton. You carry out plans as concrete actions, run "
        "them in order, verify each result and stop safely when a step fails.",
    ),
    "harmonia": (
        "Harmonia",
        "the workflow orchestrator of Tekton. You coordinate long-running processes "
        "across components, manage their state and recover cleanly from interruptions.",
    ),
    "metis": (
        "Metis",
        "the task-management system of Tekton. You break work into tasks, track their "
        "dependencies, status and owners, and keep priorities visible.",
    ),
    "apollo": (
        "Apollo",
        "the attention and prediction system of Tekton. You watch how the models are "
        "used, anticipate context and token pressure, and advise how to stay on track.",
    ),
    "budget": (
        "Budget",
        "the cost-management system of Tekton. You track token usage and spending "
        "against limits, explain costs and suggest cheaper ways to reach the same result.",
    ),
    "terma": (
        "Terma",
        "the terminal assistant of Tekton. You help with shell commands and terminal "
        "sessions, explain what a command will do before it runs and warn about "
        "destructive ones.",
    ),
    "hephaestus": (
        "Hephaestus",
        "the user interface of Tekton. You help users find their way around the "
        "components, explain what each panel shows and turn requests into actions.",
    ),
}

GUIDELINES = (
    "Guidelines:\n"
    "- Be accurate and concise; say so when you are unsure or lack information.\n"
    "- Stay within your role and name the Tekton component better suited when a request "
    "belongs elsewhere.\n"
    "- Prefer structured answers (steps, lists) when they make the result easier to use."
)




def default_prompt_text(component: str) -> str:
    display, role = COMPONENT_PROMPTS[component]
    return f"You are {display}, {role}\n\n{GUIDELINES}"


def create_defaults(apps, schema_editor):
    Prompt = apps.get_model("prompts", "Prompt")
    PromptVersion = apps.get_model("prompts", "PromptVersion")
    PromptActivation = apps.get_model("prompts", "PromptActivation")
    now = timezone.now()
    for component, (display, _role) in COMPONENT_PROMPTS.items():
        slug = f"{component}_default"
        if Prompt.objects.filter(slug=slug).exists():
            continue
        has_default = Prompt.objects.filter(component=component, is_default=True).exists()
        prompt = Prompt.objects.create(
            slug=slug,
            name=f"{display} default",
            component=component,
            description=f"The default system prompt of {display}.",
            tags=["default", component],
            is_default=not has_default,
            created_at=now,
        )
        version = PromptVersion.objects.create(
            prompt=prompt,
            version=1,
            content=default_prompt_text(component),
            engine="simple",
            variables={},
            metadata={"source": "rhetor default"},
            created_by="rhetor",
            change_note="Initial default prompt",
            created_at=now,
        )
        Prompt.objects.filter(pk=prompt.pk).update(active_version=version)
        PromptActivation.objects.create(
            prompt=prompt, version=version, activated_by="rhetor", note="Initial default prompt"
        )


def remove_defaults(apps, schema_editor):
    Prompt = apps.get_model("prompts", "Prompt")
    for component in COMPONENT_PROMPTS:
        prompt = Prompt.objects.filter(slug=f"{component}_default").first()
        if prompt is not None and prompt.versions.count() == 1:
            prompt.delete()


class Migration(migrations.Migration):
    dependencies = [("prompts", "0001_initial")]

    operations = [migrations.RunPython(create_defaults, remove_defaults)]

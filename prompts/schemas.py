"""Request and response schemas of the template and prompt API (TEKTON_CONTRACT.md,
"Templates and prompts").

Input fields are accepted in snake_case and camelCase. Bodies of the contract's endpoints
ignore unknown keys (Tekton clients send extras); the endpoints Rhetor adds refuse them.
"""

from datetime import datetime
from typing import Any

from ninja import Schema
from pydantic import AliasChoices, AliasGenerator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from prompts.models import Engine, Template

Variables = list[str | dict[str, Any]] | dict[str, Any] | None


def _both_cases(name: str) -> AliasChoices:
    return AliasChoices(name, to_camel(name))


class _In(Schema):
    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=_both_cases),
        populate_by_name=True,
        extra="ignore",
    )


class _StrictIn(_In):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(Schema):
    error: str
    code: str


# --- Versioned texts (shared by templates and prompts) ----------------------------------


class NewVersionIn(_In):
    """A body that adds a version to a template or prompt (PUT); the kind's own fields
    follow these."""

    content: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    variables: Variables = None
    engine: Engine | None = None
    change_note: str = Field(default="", max_length=500)


class VersionOut(Schema):
    version_id: int
    version: int
    content: str
    engine: str
    variables: list[str]
    variable_specs: dict[str, dict[str, Any]]
    metadata: dict[str, Any]
    created_by: str
    created_at: datetime
    change_note: str


class DeletedOut(Schema):
    success: bool
    id: str


# --- Templates ---------------------------------------------------------------------------


class TemplateCreateIn(_In):
    name: str = Field(min_length=1, max_length=200)
    content: str
    category: Template.Category = Template.Category.GENERAL
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    variables: Variables = None
    engine: Engine = Engine.SIMPLE
    change_note: str = Field(default="", max_length=500)


class TemplateUpdateIn(NewVersionIn):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    category: Template.Category | None = None
    description: str | None = None
    tags: list[str] | None = None


class TemplateRenderIn(_In):
    template_id: str
    variables: dict[str, Any] = Field(default_factory=dict)
    version_id: int | None = None
    version: int | None = Field(default=None, ge=1)


class TemplateOut(Schema):
    template_id: str
    name: str
    category: str
    description: str
    variables: list[str]
    tags: list[str]
    version_count: int
    last_updated: datetime | None


class TemplateListOut(Schema):
    count: int
    templates: list[TemplateOut]


class TemplateDetailOut(TemplateOut):
    content: str
    version: int
    version_id: int
    current_version: VersionOut
    versions: list[VersionOut]


class TemplateVersionsOut(Schema):
    template_id: str
    count: int
    versions: list[VersionOut]


class TemplateRenderOut(Schema):
    template_id: str
    version_id: int
    version: int
    rendered_content: str


# --- Prompts -----------------------------------------------------------------------------


class PromptCreateIn(_In):
    name: str = Field(min_length=1, max_length=200)
    component: str = Field(min_length=1, max_length=64)
    content: str
    prompt_id: str | None = Field(default=None, max_length=120, pattern=r"^[-a-zA-Z0-9_]+$")
    task_type: str = Field(default="", max_length=64)
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    is_default: bool = False
    parent_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    variables: Variables = None
    engine: Engine = Engine.SIMPLE
    change_note: str = Field(default="", max_length=500)


class PromptUpdateIn(NewVersionIn):
    activate: bool = True
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = None
    tags: list[str] | None = None
    is_default: bool | None = None


class PromptVersionOut(VersionOut):
    is_active: bool


class PromptOut(Schema):
    prompt_id: str
    name: str
    component: str
    task_type: str
    description: str
    tags: list[str]
    is_default: bool
    parent_id: str | None
    version_count: int
    last_updated: datetime | None
    active_version: int | None
    active_version_id: int | None


class PromptListOut(Schema):
    count: int
    prompts: list[PromptOut]


class PromptDetailOut(PromptOut):
    content: str
    variables: list[str]
    version: int
    version_id: int
    current_version: PromptVersionOut
    versions: list[PromptVersionOut]


class PromptVersionsOut(Schema):
    prompt_id: str
    active_version: int | None
    count: int
    versions: list[PromptVersionOut]


class PromptActivateIn(_StrictIn):
    version: int | None = Field(default=None, ge=1)
    version_id: int | None = None
    note: str = Field(default="", max_length=500)


class PromptRollbackIn(_StrictIn):
    note: str = Field(default="", max_length=500)


class PromptActivationOut(Schema):
    prompt_id: str
    active_version: int
    active_version_id: int
    previous_version: int | None
    activated_by: str
    activated_at: datetime | None
    changed: bool


class PromptCompareIn(_StrictIn):
    prompt_id1: str = Field(validation_alias=AliasChoices("prompt_id1", "promptId1"))
    prompt_id2: str = Field(validation_alias=AliasChoices("prompt_id2", "promptId2"))
    version1: int | None = Field(default=None, ge=1)
    version2: int | None = Field(default=None, ge=1)
    run: bool = False
    message: str | None = Field(default=None, min_length=1)
    variables: dict[str, Any] = Field(default_factory=dict)
    component: str | None = Field(default=None, max_length=100)
    task_type: str = Field(default="default", min_length=1, max_length=100)
    options: dict[str, Any] = Field(default_factory=dict)


class ComparedPromptOut(Schema):
    prompt_id: str
    name: str
    component: str
    version: int
    version_id: int
    content: str
    variables: list[str]
    length: int
    tokens: int


class CompareMetricsOut(Schema):
    length_difference: int
    token_difference: int
    shared_variables: list[str]
    only_in_prompt1: list[str]
    only_in_prompt2: list[str]
    identical: bool


class RunUsageOut(Schema):
    input_tokens: int
    output_tokens: int
    cost: str | None = None


class CompareRunOut(Schema):
    prompt_id: str
    version: int
    message: str | None
    model: str | None
    provider: str | None
    usage: RunUsageOut | None
    error: str | None = None
    code: str | None = None


class PromptCompareOut(Schema):
    prompt1: ComparedPromptOut
    prompt2: ComparedPromptOut
    diff: str
    diff_lines: list[str]
    metrics: CompareMetricsOut
    results: dict[str, CompareRunOut] | None = None


# --- Personalities and prompt generation --------------------------------------------------


class PersonalityCreateIn(_In):
    name: str = Field(min_length=1, max_length=100)
    # A list of traits, or the original client's object of trait -> value.
    traits: list[str] | dict[str, Any] = Field(default_factory=list)
    tone: str = Field(default="", max_length=100)
    description: str = ""
    # Phrasings, or example interactions such as {"input": ..., "output": ...}.
    examples: list[str | dict[str, Any]] = Field(default_factory=list)


class PersonalityOut(Schema):
    personality_id: int
    name: str
    traits: list[str]
    tone: str
    description: str
    examples: list[str]
    prompt_count: int
    created_at: datetime
    updated_at: datetime


class PersonalityListOut(Schema):
    count: int
    personalities: list[PersonalityOut]


class PromptGenerateIn(_In):
    task: str = Field(min_length=1, max_length=20000)
    component: str | None = Field(default=None, min_length=1, max_length=64)
    task_type: str | None = Field(default=None, max_length=64)
    prompt_id: str | None = Field(default=None, max_length=120)
    personality_id: str | int | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    variables: dict[str, Any] = Field(default_factory=dict)
    format: str = Field(default="instruction", max_length=20)


class GeneratedMessageOut(Schema):
    role: str
    content: str


class PromptGenerateOut(Schema):
    prompt: str
    system_prompt: str
    messages: list[GeneratedMessageOut]
    format: str
    task: str
    component: str | None
    prompt_id: str | None
    prompt_version: int | None
    personality_id: int | None
    personality: str | None
    sections: list[str]
    length: int
    tokens: int

"""Templates, system prompts and their immutable versions.

Both are *versioned texts*: a `VersionedText` row (id, name, description, tags) whose
content lives in `TextVersion` rows. A version is written once and never changed: editing
content creates a new version (R7). `Template` and `Prompt` are the two kinds; each adds
only its own fields. A template's current version is its latest. A prompt's is the one its
active-version pointer names; moving the pointer (activation, rollback) is recorded in
`PromptActivation`, itself append-only.
"""

from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from django.db import models
from django.db.models import Q
from django.utils import timezone

from prompts.errors import VersionImmutable
from rhetor_site.db import TimestampedModel

if TYPE_CHECKING:
    from django.db.models.fields.related_descriptors import RelatedManager


class Engine(models.TextChoices):
    """How a version's content is rendered. `simple` is `{{ name }}` substitution only;
    `jinja` is Jinja2's immutable sandbox with strict undefined (conditionals, loops)."""

    SIMPLE = "simple", "Simple {{ name }} substitution"
    JINJA = "jinja", "Jinja2 sandbox (conditionals and loops)"


def spec_list(variables: Any) -> list[dict[str, Any]]:
    """Stored declarations as a list of `{"name", "type", "required", "default",
    "description"}`, in order. (A list, because PostgreSQL's jsonb does not keep the key
    order of an object; an object of name -> spec is still read.) `variables` is the
    JSONField's value as stored, hence `Any`."""
    if isinstance(variables, dict):
        return [{"name": name, **spec} for name, spec in variables.items()]
    return [dict(spec) for spec in variables or []]


_M = TypeVar("_M", bound=models.Model)


class AppendOnlyQuerySet(models.QuerySet[_M]):
    def update(self, **kwargs: Any) -> int:
        raise VersionImmutable(f"{self.model.__name__} rows are append-only; create a new one.")


class AppendOnlyModel(models.Model):
    """A row that can be inserted but never updated. Deletion happens only by cascade from
    its parent (deleting a template or prompt)."""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise VersionImmutable(
                f"{type(self).__name__} {self.pk} is immutable; create a new version instead."
            )
        super().save(*args, **kwargs)


# --- Versioned texts (the core Template and Prompt share) ------------------------------


class VersionedText(TimestampedModel):
    """A named text whose content lives in append-only versions (`versions`, newest
    first by number). Each concrete kind relabels `slug`, its public id (`template_id`,
    `prompt_id`), and adds its own fields."""

    slug = models.SlugField(max_length=120, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)

    if TYPE_CHECKING:  # the reverse relation of each kind's version model
        versions: RelatedManager["TextVersion"]

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.slug


class TextVersion(AppendOnlyModel):
    """One immutable version of a versioned text. Each concrete kind adds the foreign key
    to its text (`related_name="versions"`) and names it in `owner_field`."""

    owner_field: ClassVar[str]

    version = models.PositiveIntegerField()
    content = models.TextField()
    engine = models.CharField(max_length=10, choices=Engine.choices, default=Engine.SIMPLE)
    # [{"name", "type", "required", "default", "description"}], in the order the names
    # first appear in the content, then declared-only names.
    variables = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    change_note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.owner.slug} v{self.version}"

    @property
    def owner(self) -> VersionedText:
        """The text (template or prompt) this is a version of."""
        owner: VersionedText = getattr(self, self.owner_field)
        return owner

    @property
    def variable_names(self) -> list[str]:
        return [spec["name"] for spec in spec_list(self.variables)]

    @property
    def variable_specs(self) -> dict[str, dict[str, Any]]:
        """name -> {"type", "required", "default", "description"}, in order."""
        return {
            spec["name"]: {k: v for k, v in spec.items() if k != "name"}
            for spec in spec_list(self.variables)
        }


def version_constraints(owner_field: str) -> list[models.BaseConstraint]:
    """A concrete version model's constraints: version numbers are unique per text and
    start at 1."""
    return [
        models.UniqueConstraint(
            fields=[owner_field, "version"], name="%(app_label)s_%(class)s_unique_number"
        ),
        models.CheckConstraint(
            condition=Q(version__gte=1), name="%(app_label)s_%(class)s_version_positive"
        ),
    ]


# --- Templates -----------------------------------------------------------------------------


class Template(VersionedText):
    class Category(models.TextChoices):
        SYSTEM = "system", "System"
        TASK = "task", "Task"
        COMPONENT = "component", "Component"
        USER = "user", "User"
        GENERAL = "general", "General"

    slug = models.SlugField(
        "template id", max_length=120, unique=True, help_text="Derived from the name."
    )
    category = models.CharField(max_length=20, choices=Category.choices, default=Category.GENERAL)

    class Meta:
        ordering = ["category", "name"]


class TemplateVersion(TextVersion):
    owner_field = "template"
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="versions")

    class Meta:
        ordering = ["template_id", "-version"]
        constraints = version_constraints("template")


# --- Prompts -------------------------------------------------------------------------------


class Personality(TimestampedModel):
    name = models.CharField(max_length=100, unique=True)
    traits = models.JSONField(default=list, blank=True, help_text="A list of short traits.")
    tone = models.CharField(max_length=100, blank=True)
    description = models.TextField(blank=True)
    examples = models.JSONField(default=list, blank=True, help_text="Example phrasings.")

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "personalities"

    def __str__(self) -> str:
        return self.name


class Prompt(VersionedText):
    slug = models.SlugField("prompt id", max_length=120, unique=True)
    component = models.CharField(max_length=64, db_index=True)
    task_type = models.CharField(
        max_length=64, blank=True, help_text="Empty: any task type of the component."
    )
    is_default = models.BooleanField(default=False)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    personality = models.ForeignKey(
        Personality, null=True, blank=True, on_delete=models.SET_NULL, related_name="prompts"
    )
    # The pointer: which version requests use. Moved only by prompt_version_activate.
    active_version = models.OneToOneField(
        "PromptVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="active_for",
    )

    class Meta:
        ordering = ["component", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["component"],
                condition=Q(is_default=True),
                name="prompts_prompt_one_default_per_component",
            ),
        ]


class PromptVersion(TextVersion):
    owner_field = "prompt"
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="versions")

    class Meta:
        ordering = ["prompt_id", "-version"]
        constraints = version_constraints("prompt")


class PromptActivation(AppendOnlyModel):
    """One move of a prompt's active-version pointer: who, when, from which version."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="activations")
    version = models.ForeignKey(PromptVersion, on_delete=models.CASCADE, related_name="+")
    previous_version = models.ForeignKey(
        PromptVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    activated_by = models.CharField(max_length=150, blank=True)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.prompt_id} -> {self.version_id}"

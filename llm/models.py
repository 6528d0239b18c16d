from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from llm.routes import route_target_errors
from rhetor_site.db import TimestampedModel


class DefaultModel(models.Model):
    """The operator's choice of default provider and model (POST /provider): used by
    requests that fall through to the `default` route. One row at most."""

    SINGLETON_ID = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID)
    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=200)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(id=1), name="default_model_singleton")
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


ROUTE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"


class TaskRoute(TimestampedModel):
    """A task route: which provider/model answers a task type (or a component, or a
    component's task type), with its options and fallback chain.

    Looked up as `<component>_<task_type>`, then `<component>`, then `<task_type>`, then
    `default` (llm.route_table). Seeded from the built-in routes and RHETOR_TASK_CONFIG when the
    table is empty; written only through the `task_route_*` services, which validate the
    models against the provider catalogues and tell every worker to reload."""

    name = models.CharField(
        max_length=100,
        unique=True,
        validators=[
            RegexValidator(
                ROUTE_NAME_PATTERN,
                "Use lowercase letters, digits, '-' and '_' (e.g. code, ergon, ergon_planning).",
            )
        ],
        help_text="A task type (code), a component (ergon) or both (ergon_planning).",
    )
    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=200)
    temperature = models.DecimalField(
        max_digits=3,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="0 to 2; empty: the provider's default.",
    )
    max_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: the provider's default."
    )
    # The ordered fallback chain: [{"provider": "openai", "model": "gpt-4o"}, ...].
    fallbacks = models.JSONField(default=list, blank=True)
    lower_max_tokens = models.BooleanField(
        default=False,
        help_text="An enforced budget may lower max_tokens to what it still affords.",
    )
    description = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ("name",)
        constraints = [
            models.CheckConstraint(
                condition=models.Q(temperature__isnull=True)
                | (models.Q(temperature__gte=0) & models.Q(temperature__lte=2)),
                name="task_route_temperature_range",
                violation_error_message="Temperature must be between 0 and 2.",
            ),
            models.CheckConstraint(
                condition=models.Q(max_tokens__isnull=True) | models.Q(max_tokens__gte=1),
                name="task_route_max_tokens_positive",
                violation_error_message="max_tokens must be at least 1.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} → {self.provider}/{self.model}"

    def clean(self) -> None:
        errors = route_target_errors(
            provider=self.provider, model=self.model, fallbacks=self.fallbacks
        )
        if errors:
            raise ValidationError(errors)

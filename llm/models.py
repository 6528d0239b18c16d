from django.db import models


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

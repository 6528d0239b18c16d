from typing import Any

from django.apps import AppConfig
from django.core import checks


class BudgetConfig(AppConfig):
    name = "budget"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_migrate, post_save

        from budget.models import BudgetLimit, ModelPrice

        checks.register(check_budget_settings)
        # Workers cache prices and limits (budget.selectors.config). The
        # budget services say when they change them; these receivers also catch every
        # other save or delete of a row (admin deletes, shell and data fixes, bulk deletes
        # of a queryset) and migrations. Not domain logic (R3): cache invalidation only.
        for model in (ModelPrice, BudgetLimit):
            post_save.connect(budget_config_signal, sender=model, dispatch_uid=f"budget-{model}")
            post_delete.connect(
                budget_config_signal, sender=model, dispatch_uid=f"budget-del-{model}"
            )
        post_migrate.connect(budget_config_signal, sender=self, dispatch_uid="budget-migrate")


def budget_config_signal(sender: Any, **kwargs: Any) -> None:
    """A price or limit row changed outside the services' knowledge (see ready())."""
    from budget.selectors import budget_config_touched

    budget_config_touched()


def check_budget_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """RHETOR_BUDGET_* and RHETOR_TIMEZONE must make sense before any request is priced."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from django.conf import settings

    from budget.policies import POLICIES, AmountError, nanos_from_usd

    errors: list[checks.CheckMessage] = []
    policy = str(getattr(settings, "RHETOR_BUDGET_POLICY", "warn")).strip().lower()
    if policy not in POLICIES:
        errors.append(
            checks.Error(
                f"RHETOR_BUDGET_POLICY is {policy!r}; it must be one of ignore, warn, enforce.",
                id="budget.E001",
            )
        )
    for period in ("DAILY", "WEEKLY", "MONTHLY"):
        raw = str(getattr(settings, f"RHETOR_BUDGET_{period}_LIMIT", "") or "").strip()
        if raw:
            try:
                nanos_from_usd(raw)
            except AmountError as exc:
                errors.append(
                    checks.Error(f"RHETOR_BUDGET_{period}_LIMIT: {exc}", id="budget.E002")
                )
    try:
        ZoneInfo(str(settings.RHETOR_TIMEZONE))
    except (ZoneInfoNotFoundError, ValueError):
        errors.append(
            checks.Error(
                f"RHETOR_TIMEZONE {settings.RHETOR_TIMEZONE!r} is not a known time zone.",
                id="budget.E003",
            )
        )
    return errors

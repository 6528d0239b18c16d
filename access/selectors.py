"""Reads of API keys."""

from django.db.models import QuerySet

from access.models import ApiKey


def api_key_list(*, include_revoked: bool = False) -> QuerySet[ApiKey]:
    qs = ApiKey.objects.all()
    if not include_revoked:
        qs = qs.filter(revoked_at__isnull=True)
    return qs.order_by("-created_at", "-id")


def api_key_by_id(*, key_id: str) -> ApiKey | None:
    """One indexed query (key_id is unique); revoked keys are returned too."""
    return ApiKey.objects.filter(key_id=key_id).first()

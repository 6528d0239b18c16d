"""Abstract base models shared by the apps (no concrete model lives here), and the
release of pooled connections between a request's database steps."""

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import models
from django.utils import timezone

P = ParamSpec("P")
R = TypeVar("R")


class TimestampedModel(models.Model):
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


def release_pooled_connection() -> None:
    """Give this thread's database connection back to the pool between the short database
    steps of a request (PostgreSQL with OPTIONS pool), so that no request holds one across
    a provider call: with one connection per request thread held until the request ends,
    a pool of a few connections serialised every concurrent request. A no-op without a
    pool, and inside a transaction (an atomic block, or a test case's)."""
    from django.db import connection

    if connection.connection is None or connection.in_atomic_block:
        return
    if not connection.settings_dict.get("OPTIONS", {}).get("pool"):
        return
    connection.close()


def released(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn`, then `release_pooled_connection()`: for sync steps called via sync_to_async."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        finally:
            release_pooled_connection()

    return run

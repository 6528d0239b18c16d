"""Per-worker copies of configuration that every request reads (task routes, budget
prices and limits, system prompts), kept fresh through a version in the shared cache.

A request reads the worker's copy: no query. At most every `recheck_seconds` (a setting,
1 s by default; 0 in the tests) the copy compares its version with the shared one (one
cache read: Redis when configured) and reloads when another worker changed the
configuration. A write bumps the shared version once it is committed
(`VersionedCache.changed`, usually through `transaction.on_commit`) and drops the
writing worker's copy at once.
"""

import time
import uuid
from collections.abc import Callable
from typing import Generic, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache

T = TypeVar("T")


class VersionedCache(Generic[T]):
    """One worker's copy of what `loader` reads, checked against the version under
    `key` at most every `recheck_seconds` (or the setting `recheck_setting`)."""

    def __init__(
        self,
        *,
        key: str,
        loader: Callable[[], T],
        recheck_setting: str = "RHETOR_ROUTES_RECHECK_SECONDS",
        recheck_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.key = key
        self.loader = loader
        self.recheck_setting = recheck_setting
        self._recheck = recheck_seconds
        self.clock = clock
        self.value: T | None = None
        self.version: str | None = None
        self.checked_at = 0.0
        self.loads = 0

    @property
    def recheck_seconds(self) -> float:
        if self._recheck is not None:
            return self._recheck
        return float(getattr(settings, self.recheck_setting, 1.0))

    def fresh(self) -> T | None:
        """The copy, if it was checked recently enough to use without looking."""
        if self.value is not None and self.clock() - self.checked_at < self.recheck_seconds:
            return self.value
        return None

    def get(self) -> T:
        value = self.fresh()
        if value is not None:
            return value
        # The version first, then the rows: a write committed in between makes the next
        # check reload again rather than keep rows older than the version says.
        version = self.shared_version()
        if self.value is None or version != self.version:
            self.value = self.loader()
            self.version = version
            self.loads += 1
        self.checked_at = self.clock()
        return self.value

    async def aget(self) -> T:
        value = self.fresh()
        if value is not None:
            return value
        return await sync_to_async(self.get)()

    def invalidate(self) -> None:
        """Drop this worker's copy (it reloads on its next use)."""
        self.value = None
        self.version = None

    def shared_version(self) -> str:
        version = cache.get(self.key)
        if version is None:
            # First worker up, or the cache was flushed: start a version (add: one wins).
            cache.add(self.key, uuid.uuid4().hex, timeout=None)
            version = cache.get(self.key)
        return str(version)

    def changed(self) -> None:
        """Tell every worker to reload: a new shared version, this worker's copy dropped.
        Call it once the change is committed."""
        cache.set(self.key, uuid.uuid4().hex, timeout=None)
        self.invalidate()

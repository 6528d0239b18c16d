"""This process's cache of looked-up API keys, keyed by key id.

A leaf module: the authenticator (access.auth) fills it, and whatever revokes a key
(access.services, the admin) drops the key from it, without either importing the other.
"""

import threading
from typing import Any

CACHE_MAX = 10_000

_entries: dict[str, Any] = {}
_lock = threading.Lock()


def cached_key(key_id: str) -> Any | None:
    """The entry the authenticator stored for `key_id`, or None."""
    return _entries.get(key_id)


def cache_key(key_id: str, entry: Any) -> None:
    with _lock:
        if len(_entries) >= CACHE_MAX:
            _entries.clear()
        _entries[key_id] = entry


def forget_key(key_id: str | None = None) -> None:
    """Drop one key (or all) from this process's cache."""
    with _lock:
        if key_id is None:
            _entries.clear()
        else:
            _entries.pop(key_id, None)

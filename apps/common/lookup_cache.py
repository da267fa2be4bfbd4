"""A per-process cache of rows looked up by a secret's hash (API tokens,
publishable keys): entries live ``ttl`` seconds; a ``forget`` while a load is in
flight keeps that load's result out of the cache (it may be the row as it was
before the change that called ``forget``); a full cache starts over.

``revalidate`` reloads every entry at once, from a background thread (the
decide refresher, apps/personalization/refresher.py): with it running, requests
read entries with a longer ``ttl`` (a hard bound) and load only on a miss."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LookupCache(Generic[T]):
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[T, float]] = {}
        self._generation = 0  # bumped (under _lock) by every forget

    def forget(self, key: str | None = None) -> None:
        """Forget one entry, or every entry; loads in flight do not cache what they read."""
        with self._lock:
            self._generation += 1
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)

    def get(self, key: str, ttl: float, load: Callable[[str], T | None]) -> T | None:
        """The cached value if younger than ``ttl`` seconds, else ``load(key)``
        (cached when found, ``ttl`` > 0 and nothing was forgotten meanwhile)."""
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and now - entry[1] < ttl:
            return entry[0]
        generation = self._generation
        value = load(key)
        if value is None:
            with self._lock:
                self._entries.pop(key, None)
            return None
        if ttl > 0:
            with self._lock:
                if generation == self._generation:
                    if len(self._entries) >= self.max_entries:
                        self._entries.clear()
                    self._entries[key] = (value, now)
        return value

    def revalidate(self, load_many: Callable[[list[str]], dict[str, T]]) -> int:
        """Reload every entry with one ``load_many(keys)`` (key -> value for those
        still valid): each found is stored afresh (aged from before the load), each
        missing dropped. Nothing is stored if a ``forget`` ran meanwhile (what was
        read may be older than that change); the entries then age as before.
        Returns how many entries were renewed."""
        with self._lock:
            keys = list(self._entries)
            generation = self._generation
        if not keys:
            return 0
        now = time.monotonic()
        found = load_many(keys)
        with self._lock:
            if generation != self._generation:
                return 0
            for key in keys:
                value = found.get(key)
                if value is None:
                    self._entries.pop(key, None)
                else:
                    self._entries[key] = (value, now)
        return sum(1 for key in keys if key in found)

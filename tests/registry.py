"""Test-only registering: production code cannot unregister (apps/common/registry.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from apps.common.registry import Registry


@contextmanager
def registered(registry: Registry[Any], name: str, entry: Any, *, order: int = 0) -> Iterator[Any]:
    """``with registered(registry, name, entry):`` the entry is in the registry,
    and afterwards the registry is as it was."""
    saved = dict(registry._entries)
    registry.register(name, entry, order=order)
    try:
        yield entry
    finally:
        registry._entries.clear()
        registry._entries.update(saved)


@contextmanager
def emptied(registry: Registry[Any]) -> Iterator[None]:
    """``with emptied(registry):`` nothing is registered, and afterwards the
    registry is as it was (for what must hold when no app has registered)."""
    saved = dict(registry._entries)
    registry._entries.clear()
    try:
        yield
    finally:
        registry._entries.clear()
        registry._entries.update(saved)

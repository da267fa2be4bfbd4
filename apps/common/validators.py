"""Small input checks shared by the APIs and admin."""

from __future__ import annotations

from typing import Any


def contains_nul(value: Any) -> bool:
    """Whether a JSON-like value holds a NUL character anywhere (keys included):
    PostgreSQL stores none in text or jsonb, and would fail the whole write."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(v) for v in value)
    return False

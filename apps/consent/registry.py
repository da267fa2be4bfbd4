"""Where other apps plug into privacy work.

* Personal-data providers add their tables to a person's export (access and
  portability requests). Segments and destinations register theirs when they exist.
* Deletion hooks are called by erasure so that export destinations delete the
  person on their side too; each outcome is recorded on the request.

A provider is ``fn(profile_ids) -> list[dict]`` (the rows, JSON-serializable); a
hook is ``fn(identifiers) -> str`` returning "ok" or "not_applicable" (raising on
failure), where ``identifiers`` is a list of ``(type, value)``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

Provider = Callable[[Sequence[uuid.UUID]], list[dict[str, Any]]]
DeletionHook = Callable[[Sequence[tuple[str, str]]], str]

_providers: dict[str, Provider] = {}
_hooks: dict[str, DeletionHook] = {}


def register_personal_data(name: str, provider: Provider) -> None:
    _providers[name] = provider


def register_deletion_hook(name: str, hook: DeletionHook) -> None:
    _hooks[name] = hook


def unregister_deletion_hook(name: str) -> None:
    _hooks.pop(name, None)


def personal_data_providers() -> dict[str, Provider]:
    return dict(_providers)


def deletion_hooks() -> dict[str, DeletionHook]:
    return dict(_hooks)

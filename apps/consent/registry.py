"""Where other apps plug into privacy work.

* Personal-data providers add their tables to a person's export (access and
  portability requests): ``register_personal_data(name, fn)``, ``fn(profile_ids)
  -> list[dict]`` (the rows, JSON-serializable).
* Personal-data erasers delete a person's rows from the app's own tables when the
  person is erased (segment memberships and their history, say):
  ``register_personal_data_eraser(name, fn)``, ``fn(profile_ids) -> int`` (rows
  deleted, kept as a count in the proof of erasure). An eraser runs inside the
  erasure's transaction, before identity deletes the profiles (so foreign keys to
  them still resolve), must be idempotent (a step may run again after a crash) and
  raises on failure: the step is then retried, and the erasure does not complete
  without it.
* Deletion hooks are called by erasure so that export destinations delete the
  person on their side too: ``register_deletion_hook(name, fn)``,
  ``fn(identifiers) -> str`` returning "ok" or "not_applicable" (raising on
  failure), where ``identifiers`` is a list of ``(type, value)``. A failure is
  retried with backoff (CDP_ERASURE_HOOK_RETRY_DELAYS); after the last attempt the
  request completes "with failures", shown in admin.

Apps register in their ``AppConfig.ready()``; names are unique per kind.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

Provider = Callable[[Sequence[uuid.UUID]], list[dict[str, Any]]]
Eraser = Callable[[Sequence[uuid.UUID]], int]
DeletionHook = Callable[[Sequence[tuple[str, str]]], str]

_providers: dict[str, Provider] = {}
_erasers: dict[str, Eraser] = {}
_hooks: dict[str, DeletionHook] = {}


def register_personal_data(name: str, provider: Provider) -> None:
    _providers[name] = provider


def register_personal_data_eraser(name: str, eraser: Eraser) -> None:
    _erasers[name] = eraser


def unregister_personal_data_eraser(name: str) -> None:
    _erasers.pop(name, None)


def register_deletion_hook(name: str, hook: DeletionHook) -> None:
    _hooks[name] = hook


def unregister_deletion_hook(name: str) -> None:
    _hooks.pop(name, None)


def personal_data_providers() -> dict[str, Provider]:
    return dict(_providers)


def personal_data_erasers() -> dict[str, Eraser]:
    return dict(_erasers)


def deletion_hooks() -> dict[str, DeletionHook]:
    return dict(_hooks)

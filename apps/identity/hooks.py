"""Profile lifecycle hooks: how apps above identity follow merges and splits.

Identity merges and splits profiles; the apps above it own rows that point at
profiles (events, consent records; segment memberships and holdouts later).
They register handlers here in their ``AppConfig.ready()`` (apps/common/registry.py):

    from apps.identity.hooks import merged
    merged.register("events", events_follow_merge, order=10)

**merged** ``handler(ProfilesMerged)``: each absorbed profile id mapped to its live
survivor's id (one merge, or a bulk merge's whole batch). The handler moves its
rows to the survivors.

**split** ``handler(ProfileSplit)``: a merge undone. The profile that was
absorbed is live again with its own identifiers; the handler moves back what
belongs to it (what moved back: ``ProfileSplit``'s fields say how to tell).

Both run inside the merge's or split's transaction, after identity's own writes,
with the profiles concerned locked (FOR UPDATE) and in the registry's order:
events (10), then consent (20). A handler that raises rolls the whole merge or
split back: its error reaches the caller, and nothing of it is kept. Handlers do
no network I/O and must not merge or split themselves.

Erasure is the third lifecycle event; it is a resumable, batched process owned by
consent (apps/consent/services/erasure.py), whose erasers registry is the hook.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from apps.common.registry import Registry


@dataclass(frozen=True, slots=True)
class ProfilesMerged:
    # absorbed profile id -> the id of the live profile it is part of now
    mapping: Mapping[uuid.UUID, uuid.UUID]


@dataclass(frozen=True, slots=True)
class ProfileSplit:
    # The profile split back out (live again), and the live one it leaves.
    profile_id: uuid.UUID
    from_profile_id: uuid.UUID
    # It and the profiles it had absorbed before its own merge: rows that came
    # from any of these go back to it.
    tree_ids: tuple[uuid.UUID, ...]
    # The identifiers that went back to it, and the user ids that stay with the
    # other profile, as (type, normalized value); ``normalize(type, raw)`` turns a
    # raw id, as an event carries it, into that form.
    identifiers: frozenset[tuple[str, str]]
    kept_user_ids: frozenset[tuple[str, str]]
    normalize: Callable[[str, Any], str | None]
    # The profile left was the merge's own survivor (not one it merged into
    # later): its first and last seen are recomputed from what stays with it.
    recompute_seen: bool


MergedHandler = Callable[[ProfilesMerged], None]
SplitHandler = Callable[[ProfileSplit], None]

merged: Registry[MergedHandler] = Registry("identity.merged")
split: Registry[SplitHandler] = Registry("identity.split")


def profiles_merged_notify(*, mapping: Mapping[uuid.UUID, uuid.UUID]) -> None:
    """Call every merged handler, in order (inside the merge's transaction)."""
    if not mapping:
        return
    event = ProfilesMerged(mapping=dict(mapping))
    for handler in merged:
        handler(event)


def profile_split_notify(event: ProfileSplit) -> None:
    """Call every split handler, in order (inside the split's transaction)."""
    for handler in split:
        handler(event)

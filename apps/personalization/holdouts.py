"""Deterministic holdouts.

A profile is held out of a rule when the bucket of ``sha1("<rule id>.<holdout
key>")`` falls below the rule's percentage. The bucket is PostHog's: the first 15
hex digits of the SHA-1 as an integer over 0xFFFFFFFFFFFFFFF, a number in [0, 1]
(PostHog's feature-flag rollout does the same). Nothing random and nothing
per-process enters it, so every server, before and after a restart, puts a
profile in the same group; and since the rule id is in the hash, one profile's
holdouts in different rules are independent.

The holdout key is the profile's own id until a merge. The ``merged`` lifecycle
hook (registrations.py) writes each survivor's key to ``HoldoutKey`` so that it is
kept from then on; an absorbed profile's own row stays, so a split gives it its
old key (and buckets) back with nothing to write (the split hook in
registrations.py moves its exposures back).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

from .models import HoldoutKey

LONG_SCALE = float(0xFFFFFFFFFFFFFFF)


def holdout_bucket(rule_id: int, key: str) -> float:
    digest = hashlib.sha1(f"{rule_id}.{key}".encode(), usedforsecurity=False).hexdigest()
    return int(digest[:15], 16) / LONG_SCALE


def is_held_out(rule_id: int, key: str, percent: int) -> bool:
    if percent <= 0:
        return False
    if percent >= 100:
        return True
    return holdout_bucket(rule_id, key) < percent / 100.0


def holdout_key(profile_id: uuid.UUID) -> str:
    row = HoldoutKey.objects.filter(profile_id=profile_id).values_list("key", flat=True).first()
    return row or str(profile_id)


def holdout_keys_keep(survivor_ids: Iterable[uuid.UUID]) -> int:
    """Pin each survivor's current key (its own id unless pinned before)."""
    ids = set(survivor_ids)
    have = set(HoldoutKey.objects.filter(profile_id__in=ids).values_list("profile_id", flat=True))
    rows = [HoldoutKey(profile_id=pid, key=str(pid)) for pid in sorted(ids - have)]
    HoldoutKey.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)

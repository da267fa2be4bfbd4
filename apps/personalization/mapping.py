"""The content mapping as decisions read it, cached in each process.

**What is cached.** Every placement with its default variant, and its rules
(enabled ones only, ordered by priority, highest first, then by id) with each
rule's variant and segment key; and which of the rules' segments are activated
(enabled and at least their minimum size). Memberships are never cached: a
decision reads the profile's current segment ids on every request (one indexed
query), so a membership change made by the real-time stage is visible at once.

**How it stays correct across processes.** Every save or delete of a placement,
variant or rule bumps ``MappingVersion.version`` (one row, in the same
transaction as the change; Django's post_save/post_delete signals, so admin,
API, shell and cascades all count). Each process checks that number at most
every ``CDP["DECIDE_MAPPING_CHECK_MS"]`` milliseconds (default 500) and reloads
the whole mapping when it moved; the process that made a change drops its copy
on commit, so it sees its own change at once. Segment activation changes with
refreshes, not with the mapping: it is re-read at every check too, so a segment
that falls below its minimum size stops counting within the same interval.
Date windows are evaluated per request against the clock, never cached.

**For apps above (exports).** ``mapping_changed`` (a Django signal) is sent once
the transaction that changed the mapping has committed, with
``kind`` ("placement", "variant" or "rule"), ``key`` (the placement's or
variant's key, the rule's id), ``action`` ("saved" or "deleted") and
``version`` (the version after the change, or None if it could not be read).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import django.dispatch
from django.conf import settings
from django.db import transaction
from django.db.models import F

from apps.segments.models import Segment

from .models import ContentVariant, MappingVersion, Placement, Rule
from .refresher import max_age, refresh_task

mapping_changed = django.dispatch.Signal()


@dataclass(frozen=True, slots=True)
class VariantEntry:
    id: int
    key: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RuleEntry:
    id: int
    segment_id: int
    segment_key: str
    variant: VariantEntry
    priority: int
    starts_at: datetime | None
    ends_at: datetime | None
    holdout_percent: int

    def active_at(self, now: datetime) -> bool:
        return (self.starts_at is None or self.starts_at <= now) and (
            self.ends_at is None or now < self.ends_at
        )


@dataclass(frozen=True, slots=True)
class PlacementEntry:
    id: int
    key: str
    default: VariantEntry | None
    rules: tuple[RuleEntry, ...]  # priority high to low, then id


@dataclass(slots=True)
class MappingSnapshot:
    version: int
    placements: dict[str, PlacementEntry]
    activated: frozenset[int] = field(default_factory=frozenset)
    checked_at: float = 0.0


_lock = threading.Lock()
_snapshot: MappingSnapshot | None = None
_generation = 0  # bumped by mapping_cache_clear


def _check_seconds() -> float:
    return float(settings.CDP.get("DECIDE_MAPPING_CHECK_MS", 500)) / 1000.0


def mapping_version_read() -> int:
    row = MappingVersion.objects.filter(id=1).values_list("version", flat=True).first()
    return int(row or 0)


def _activated(segment_ids: set[int]) -> frozenset[int]:
    if not segment_ids:
        return frozenset()
    rows = Segment.objects.filter(id__in=segment_ids, enabled=True, size__gte=F("min_size"))
    return frozenset(rows.values_list("id", flat=True))


def _load(version: int) -> MappingSnapshot:
    variants = {
        v.id: VariantEntry(id=v.id, key=v.key, payload=v.payload)
        for v in ContentVariant.objects.all()
    }
    rules: dict[int, list[RuleEntry]] = {}
    query = (
        Rule.objects.filter(enabled=True)
        .order_by("-priority", "id")
        .values_list(
            "id",
            "placement_id",
            "segment_id",
            "segment__key",
            "variant_id",
            "priority",
            "starts_at",
            "ends_at",
            "holdout_percent",
        )
    )
    for rid, pid, sid, skey, vid, priority, starts, ends, holdout in query:
        rules.setdefault(pid, []).append(
            RuleEntry(
                id=rid,
                segment_id=sid,
                segment_key=skey,
                variant=variants[vid],
                priority=priority,
                starts_at=starts,
                ends_at=ends,
                holdout_percent=holdout,
            )
        )
    placements = {
        p.key: PlacementEntry(
            id=p.id,
            key=p.key,
            default=variants.get(p.default_variant_id) if p.default_variant_id else None,
            rules=tuple(rules.get(p.id, ())),
        )
        for p in Placement.objects.all()
    }
    segment_ids = {r.segment_id for rs in rules.values() for r in rs}
    return MappingSnapshot(
        version=version, placements=placements, activated=_activated(segment_ids)
    )


def mapping_current() -> MappingSnapshot:
    """The mapping, at most ``DECIDE_MAPPING_CHECK_MS`` old (see the module doc);
    refresher.py keeps it current in the background, and the request reloads it
    itself only when there is none or it is past the refresher's hard bound."""
    bound = max_age(_check_seconds())  # starts the refresher on first use
    snap = _snapshot
    if snap is not None and time.monotonic() - snap.checked_at < bound:
        return snap
    return _mapping_refresh(_check_seconds())


def _mapping_refresh(fresh_within: float) -> MappingSnapshot:
    """Check the version (and reload when it moved), unless another thread did
    within ``fresh_within`` seconds."""
    global _snapshot
    now = time.monotonic()
    with _lock:
        generation = _generation
        snap = _snapshot
        if snap is not None and now - snap.checked_at < fresh_within:
            return snap
        version = mapping_version_read()
        if snap is None or snap.version != version:
            snap = _load(version)
        else:
            segment_ids = {r.segment_id for p in snap.placements.values() for r in p.rules}
            snap = MappingSnapshot(
                version=version, placements=snap.placements, activated=_activated(segment_ids)
            )
        snap.checked_at = time.monotonic()
        if generation == _generation:  # not dropped meanwhile (a commit's change)
            _snapshot = snap
        return snap


def mapping_refresh() -> None:
    """The refresher's turn: check now (refresher.py)."""
    _mapping_refresh(0.0)


refresh_task("mapping", _check_seconds, mapping_refresh)


def mapping_cache_clear() -> None:
    """Forget this process's copy (the next decision reloads it); a load in
    flight does not keep what it read."""
    global _snapshot, _generation
    _generation += 1
    _snapshot = None


def mapping_version_bump(*, kind: str, key: str, action: str) -> None:
    """Called on every change of a placement, variant or rule (registrations.py)."""
    updated = MappingVersion.objects.filter(id=1).update(version=F("version") + 1)
    if not updated:
        _row, created = MappingVersion.objects.get_or_create(id=1, defaults={"version": 1})
        if not created:
            MappingVersion.objects.filter(id=1).update(version=F("version") + 1)

    def committed() -> None:
        mapping_cache_clear()
        try:
            version: int | None = mapping_version_read()
        except Exception:  # the signal still goes out; its readers reread
            version = None
        mapping_changed.send(
            sender=MappingVersion, kind=kind, key=key, action=action, version=version
        )

    transaction.on_commit(committed)

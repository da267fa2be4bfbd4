"""Keeping each person's features current: the pipeline stage, the rebuild, RFM.

**Incremental, exact.** The stage folds a batch's events into the stored state
when they all come after everything folded before (the usual case: events arrive
in time order). When one does not (a late event, a historical /v1/import, a batch
that a concurrent rebuild already counted), the profile is recomputed from all
its events instead. So the incremental result is always the rebuild's result,
which the property test checks, and the cost of a late event is one profile's
history, not everyone's.

**Merges and splits** recompute the profiles concerned (their events have moved);
the absorbed profile's row goes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.common.bulk import bulk_upsert
from apps.events.models import Event
from apps.identity.models import Profile

from .features import (
    STATE_FIELDS,
    EventView,
    FeatureState,
    feature_fold,
    features_fold_all,
    top_categories,
)
from .models import ProfileFeatures, RfmGroup
from .rules import feature_values, jsonable

logger = logging.getLogger(__name__)

_EVENT_FIELDS = ("id", "profile_id", "timestamp", "type", "event", "properties", "context")
_VIEW_FIELDS = ("id", "timestamp", "type", "event", "properties", "context")
_UPDATE_FIELDS = [*STATE_FIELDS, "updated_at"]


def _view(event: Any) -> EventView:
    return EventView(
        id=event.id,
        timestamp=event.timestamp,
        type=event.type,
        event=event.event,
        properties=event.properties if isinstance(event.properties, dict) else {},
        context=event.context if isinstance(event.context, dict) else {},
    )


def _state(row: ProfileFeatures | None) -> FeatureState:
    if row is None:
        return FeatureState()
    values = {name: getattr(row, name) for name in STATE_FIELDS}
    values["revenue_total"] = Decimal(values["revenue_total"])
    values["category_counts"] = dict(values["category_counts"] or {})
    return FeatureState(**values)


def _rows_write(states: dict[uuid.UUID, FeatureState]) -> None:
    if not states:
        return
    now = timezone.now()
    # Each state's fields as they are (no dataclasses.asdict: its deep copy of
    # every row was a third of the write).
    bulk_upsert(
        [
            ProfileFeatures(
                profile_id=pid,
                updated_at=now,
                **{name: getattr(state, name) for name in STATE_FIELDS},
            )
            for pid, state in states.items()
        ],
        unique_fields=["profile"],
        update_fields=_UPDATE_FIELDS,
    )


def _lock(ids: list[uuid.UUID]) -> None:
    """Lock these profiles (their Profile rows, which always exist, in id order, as
    merges and splits do).

    Locking the feature rows alone would let two workers both fold onto a row
    neither found (a new person's first two batches): the second write would
    lose the first's events."""
    if connection.features.has_select_for_update:
        list(
            Profile.objects.filter(id__in=ids)
            .order_by("id")
            .select_for_update()
            .values_list("id", flat=True)
        )


def _locked(profile_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, ProfileFeatures]:
    """Lock these profiles (``_lock``) and return their feature rows."""
    ids = sorted(set(profile_ids))
    _lock(ids)
    return {row.profile_id: row for row in ProfileFeatures.objects.filter(profile_id__in=ids)}


def _recomputed(profile_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, FeatureState]:
    """Every event of these profiles folded from scratch."""
    events: dict[uuid.UUID, list[EventView]] = {pid: [] for pid in profile_ids}
    # Tuples, not Event instances: the fold reads six fields, and building a
    # model per event was most of reading a merge batch's events.
    query = (
        Event.objects.filter(profile_id__in=list(profile_ids), processed_at__isnull=False)
        .order_by("profile_id", "timestamp", "id")
        .values_list("profile_id", *_VIEW_FIELDS)
    )
    for profile_id, event_id, timestamp, kind, name, properties, context in query.iterator(
        chunk_size=5000
    ):
        events[profile_id].append(
            EventView(
                id=event_id,
                timestamp=timestamp,
                type=kind,
                event=name,
                properties=properties if isinstance(properties, dict) else {},
                context=context if isinstance(context, dict) else {},
            )
        )
    return {pid: features_fold_all(evs) for pid, evs in events.items() if evs}


def features_update(events: list[Any]) -> None:
    """The pipeline stage "segments.features": fold processed events into their
    profiles' features (apps/events/pipeline.py: once per event, in the stage's
    transaction)."""
    ids = [e.id for e in events]
    if not ids:
        return
    # A merge or split may have moved these events while the stage waited for its
    # locks: read where they are once the profiles they were at are locked, until
    # that is stable.
    profiles = {e.profile_id for e in events if e.profile_id is not None}
    rows = _locked(profiles)
    for _ in range(5):
        current = list(
            Event.objects.filter(id__in=ids, processed_at__isnull=False)
            .order_by("timestamp", "id")
            .only(*_EVENT_FIELDS)
        )
        now_at = {e.profile_id for e in current if e.profile_id is not None}
        if now_at <= profiles:
            break
        profiles |= now_at
        rows = _locked(profiles)
    live = set(
        Profile.objects.filter(id__in=list(profiles), merged_into__isnull=True).values_list(
            "id", flat=True
        )
    )
    by_profile: dict[uuid.UUID, list[EventView]] = {}
    for event in current:
        if event.profile_id in live:
            by_profile.setdefault(event.profile_id, []).append(_view(event))  # type: ignore[arg-type]
    states: dict[uuid.UUID, FeatureState] = {}
    late: list[uuid.UUID] = []
    for pid, views in by_profile.items():
        state = _state(rows.get(pid))
        if not state.after(views[0].timestamp, views[0].id):
            late.append(pid)
            continue
        for view in views:
            feature_fold(state, view)
        states[pid] = state
    if late:
        states.update(_recomputed(late))
    _rows_write(states)


def features_recompute(*, profile_ids: Sequence[uuid.UUID]) -> int:
    """Recompute these profiles' features from their events; a profile with no
    event loses its row. Returns the number of rows written."""
    ids = list(dict.fromkeys(profile_ids))
    if not ids:
        return 0
    _lock(sorted(ids))
    states = _recomputed(ids)
    ProfileFeatures.objects.filter(profile_id__in=[p for p in ids if p not in states]).delete()
    _rows_write(states)
    return len(states)


def features_rebuild(
    *, chunk_size: int = 1000, progress: Callable[[int, int], None] | None = None
) -> int:
    """Recompute every live profile's features from scratch, ``chunk_size``
    profiles per transaction (so it holds no long locks and the stage goes on
    meanwhile), then the RFM scores. Returns the number of profiles with features."""
    ids = list(Profile.objects.live().order_by("id").values_list("id", flat=True))
    # Rows of profiles that are no longer live (merged away, erased) go.
    ProfileFeatures.objects.exclude(profile__merged_into__isnull=True).delete()
    written = 0
    for start in range(0, len(ids), chunk_size):
        with transaction.atomic():
            written += features_recompute(profile_ids=ids[start : start + chunk_size])
        if progress:
            progress(min(start + chunk_size, len(ids)), len(ids))
    rfm_refresh()
    return written


# --- RFM -----------------------------------------------------------------------

# R (recency quintile) by FM (the mean of the frequency and monetary quintiles,
# rounded half up) -> group: the usual RFM grid, every group reachable.
_RFM_GRID: dict[int, tuple[str, str, str, str, str]] = {
    5: (RfmGroup.NEW, RfmGroup.POTENTIAL_LOYALISTS, RfmGroup.POTENTIAL_LOYALISTS,
        RfmGroup.CHAMPIONS, RfmGroup.CHAMPIONS),
    4: (RfmGroup.PROMISING, RfmGroup.POTENTIAL_LOYALISTS, RfmGroup.POTENTIAL_LOYALISTS,
        RfmGroup.CHAMPIONS, RfmGroup.CHAMPIONS),
    3: (RfmGroup.PROMISING, RfmGroup.NEED_ATTENTION, RfmGroup.NEED_ATTENTION,
        RfmGroup.LOYAL, RfmGroup.LOYAL),
    2: (RfmGroup.HIBERNATING, RfmGroup.HIBERNATING, RfmGroup.AT_RISK,
        RfmGroup.AT_RISK, RfmGroup.CANT_LOSE_THEM),
    1: (RfmGroup.LOST, RfmGroup.LOST, RfmGroup.HIBERNATING,
        RfmGroup.AT_RISK, RfmGroup.CANT_LOSE_THEM),
}  # fmt: skip


def rfm_group(recency: int, frequency: int, monetary: int) -> str:
    fm = int((frequency + monetary + 1) // 2)
    return _RFM_GRID[recency][fm - 1]


def quintiles(values: np.ndarray) -> np.ndarray:
    """1-5 by rank, higher values higher. Equal values share the quintile of
    their middle rank, so a score never depends on row order, and a tie at the
    top does not pull everyone in it down to the bottom."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    ordered = np.sort(values)
    below = np.searchsorted(ordered, values, side="left")
    ties = np.searchsorted(ordered, values, side="right") - below
    middle = below + (ties - 1) / 2
    # The middle of each rank's share of [0, 1): one profile alone is a 3.
    return (np.floor(5 * (middle + 0.5) / n) + 1).astype(np.int64)


def rfm_refresh() -> int:
    """Score every profile with an order: recency (last order, more recent is
    better), frequency (orders), monetary (revenue), each a quintile over those
    profiles, and the group. Profiles without an order have none."""
    rows = list(
        ProfileFeatures.objects.filter(orders_count__gt=0)
        .order_by("profile_id")
        .values_list("profile_id", "last_order_at", "orders_count", "revenue_total")
    )
    ProfileFeatures.objects.filter(orders_count=0).exclude(rfm_group="").update(
        rfm_recency=None, rfm_frequency=None, rfm_monetary=None, rfm_group=""
    )
    if not rows:
        return 0
    # An order means a last order time (0.0 only to satisfy the type).
    recency = quintiles(
        np.array([r[1].timestamp() if r[1] else 0.0 for r in rows], dtype=np.float64)
    )
    frequency = quintiles(np.array([r[2] for r in rows], dtype=np.float64))
    monetary = quintiles(np.array([float(r[3]) for r in rows], dtype=np.float64))
    scored = [
        ProfileFeatures(
            profile_id=row[0],
            rfm_recency=int(r),
            rfm_frequency=int(f),
            rfm_monetary=int(m),
            rfm_group=rfm_group(int(r), int(f), int(m)),
        )
        for row, r, f, m in zip(rows, recency, frequency, monetary, strict=True)
    ]
    ProfileFeatures.objects.bulk_update(
        scored, ["rfm_recency", "rfm_frequency", "rfm_monetary", "rfm_group"], batch_size=2000
    )
    return len(scored)


# --- Reading ---------------------------------------------------------------------


def features_public(row: ProfileFeatures | None, *, now: datetime | None = None) -> dict[str, Any]:
    """The public features of a profile, by their exact names (PUBLIC_FEATURES): the
    very values a condition compares (rules.feature_values), in JSON (numbers,
    ISO 8601), with the top categories' counts."""
    now = now or timezone.now()
    after = timedelta(seconds=settings.CDP["CART_ABANDONED_AFTER_SECONDS"])
    values = {name: jsonable(value) for name, value in feature_values(row, now, after).items()}
    values["top_categories"] = top_categories(row.category_counts or {}) if row else []
    return values


def profile_features_get(*, profile_id: uuid.UUID) -> dict[str, Any]:
    return features_public(ProfileFeatures.objects.filter(profile_id=profile_id).first())

"""Profiles an admin split apart stay apart.

A split records a ``ProfileSeparation`` of the two profiles. Every merge path asks
``separations_among`` before joining two live profiles: resolution drops the
weaker identifier of the event (and records a conflict), ``profile_merge`` and the
bulk merge refuse. Only an admin's forced merge joins them; it ends the
separation (``separations_end``), and the merge record says what it overrode.

A separation names the two profiles as they were split; either may since have
been merged into another profile. So the check is between merge trees: two live
profiles are kept apart when one holds (or is) one side of a separation and the
other holds the other side.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from django.utils import timezone

from apps.identity.models import Profile, ProfileMerge, ProfileSeparation

Pair = frozenset[uuid.UUID]

_CHUNK = 5000  # ids per IN list (SQLite's limit on query parameters)


def _chunks(ids: Sequence[uuid.UUID]) -> Iterable[Sequence[uuid.UUID]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def separations_among(live_ids: Iterable[uuid.UUID]) -> dict[Pair, list[int]]:
    """Pairs of the given live profiles that are kept apart -> the separations
    (ids) that keep them apart."""
    root: dict[uuid.UUID, uuid.UUID] = {pid: pid for pid in live_ids}
    if len(root) < 2 or not ProfileSeparation.objects.active().exists():
        return {}  # the common case: one cheap query, no walk down the merge trees
    frontier = list(root)
    while frontier:
        found: list[tuple[uuid.UUID, uuid.UUID]] = []
        for chunk in _chunks(frontier):
            found += Profile.objects.filter(merged_into_id__in=chunk).values_list(
                "id", "merged_into_id"
            )
        frontier = []
        for pid, parent in found:
            if pid not in root:
                root[pid] = root[parent]
                frontier.append(pid)
    rows: set[tuple[int, uuid.UUID, uuid.UUID]] = set()
    members = list(root)
    active = ProfileSeparation.objects.active()
    for chunk in _chunks(members):
        for side in ("profile_a_id__in", "profile_b_id__in"):
            rows.update(
                active.filter(**{side: chunk}).values_list("id", "profile_a_id", "profile_b_id")
            )
    apart: dict[Pair, list[int]] = {}
    for pk, a, b in sorted(rows):
        if a in root and b in root and root[a] != root[b]:
            apart.setdefault(frozenset((root[a], root[b])), []).append(pk)
    return apart


def separations_after_merge(
    apart: dict[Pair, list[int]], *, survivor: uuid.UUID, absorbed: uuid.UUID
) -> None:
    """Keep ``apart`` (of ``separations_among``) true after ``absorbed`` was merged
    into ``survivor``: what kept the absorbed profile apart now keeps the survivor."""
    for pair in [p for p in apart if absorbed in p]:
        (other,) = pair - {absorbed}
        ids = apart.pop(pair)
        if other != survivor:  # (the merge paths never join two kept apart)
            apart.setdefault(frozenset((survivor, other)), []).extend(ids)


def separation_record(
    *, profile_ids: tuple[uuid.UUID, uuid.UUID], split_merge: ProfileMerge, actor: Any, note: str
) -> ProfileSeparation:
    """Keep two profiles apart from now on (called by the split)."""
    a, b = sorted(profile_ids)
    existing = ProfileSeparation.objects.active().filter(profile_a_id=a, profile_b_id=b).first()
    if existing is not None:
        return existing
    separation = ProfileSeparation(
        profile_a_id=a, profile_b_id=b, split_merge=split_merge, created_by=actor, note=note
    )
    separation.full_clean()
    separation.save()
    return separation


def separations_end(*, ids: Sequence[int], merge: ProfileMerge, actor: Any) -> int:
    """A forced merge joined the profiles these separations kept apart."""
    return ProfileSeparation.objects.filter(id__in=list(ids), ended_at__isnull=True).update(
        ended_at=timezone.now(), ended_by=actor, ended_by_merge=merge
    )


SEPARATED = "an admin split these profiles apart"

"""Segments whose members another app computes (kind "cluster"): making their
segment rows, swapping a whole set of them in at once, and moving single
profiles between them.

The writer (apps/clustering) decides who belongs where; this module writes it
the way segments write everything else: versioned memberships with a reason,
an outbox row for every entry and exit, sizes kept. Merges, splits and erasure
of these memberships are handled by segments as for every other kind.

Profile ids come as a numpy array of 16-byte UUIDs (dtype ``V16``, the bytes of
``uuid.UUID.bytes``), so that a million members go to the database in one
binary COPY, with no Python object per member.
"""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from apps.identity.models import Profile

from .memberships import _segment_locks, _swap
from .models import (
    Membership,
    MembershipChange,
    MembershipSource,
    RefreshStaging,
    Segment,
    SegmentKind,
)

CLUSTER = MembershipSource.CLUSTER
ENTERED, EXITED = MembershipChange.Kind.ENTERED, MembershipChange.Kind.EXITED
UUID_DTYPE = np.dtype("V16")
SQLITE_CHUNK = 2000


def uuids_pack(ids: Iterable[uuid.UUID]) -> np.ndarray:
    """UUIDs as the 16-byte array this module takes."""
    return np.array([u.bytes for u in ids], dtype="S16").view(UUID_DTYPE)


def uuids_unpack(ids: np.ndarray) -> list[uuid.UUID]:
    raw = np.ascontiguousarray(ids).view(UUID_DTYPE).tobytes()
    return [uuid.UUID(bytes=raw[i : i + 16]) for i in range(0, len(raw), 16)]


# -- the segments --------------------------------------------------------------------


def written_segment_create(*, key: str, name: str, description: str = "") -> Segment:
    """A new segment whose members another app writes (kind "cluster", no condition)."""
    segment = Segment(key=key, name=name[:200], description=description, kind=SegmentKind.CLUSTER)
    segment.full_clean()
    segment.save()
    return segment


def written_segment_describe(
    segment_id: int, *, name: str, description: str, enabled: bool = True
) -> None:
    Segment.objects.filter(pk=segment_id, kind=SegmentKind.CLUSTER).update(
        name=name[:200], description=description, enabled=enabled
    )


# -- the swap of a whole set ------------------------------------------------------------


@dataclass
class WrittenMembers:
    """The new members of one segment: ``profile_ids`` (16-byte UUIDs) with a
    ``distance`` each; every member's reason is ``reason`` plus its distance."""

    segment_id: int
    profile_ids: np.ndarray
    distances: np.ndarray
    reason: dict[str, Any]
    gone_text: str = "no longer in this cluster"


@dataclass
class SwapResult:
    entered: dict[int, int] = field(default_factory=dict)
    exited: dict[int, int] = field(default_factory=dict)
    sizes: dict[int, int] = field(default_factory=dict)
    versions: dict[int, int] = field(default_factory=dict)


_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_ROW = np.dtype([("n", ">i2"), ("l1", ">i4"), ("id", "V16"), ("l2", ">i4"), ("d", ">f8")])


def _stage_postgres(token: int, members: WrittenMembers) -> None:
    rows = np.empty(len(members.profile_ids), dtype=_ROW)
    rows["n"], rows["l1"], rows["l2"] = 2, 16, 8
    rows["id"] = np.ascontiguousarray(members.profile_ids).view(UUID_DTYPE)
    rows["d"] = np.round(np.asarray(members.distances, dtype=np.float64), 4)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS written_stage "
            "(profile_id uuid NOT NULL, distance float8 NOT NULL) ON COMMIT DROP"
        )
        cursor.execute("TRUNCATE written_stage")
        with cursor.cursor.copy(  # type: ignore[attr-defined]
            "COPY written_stage (profile_id, distance) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.write(_COPY_HEADER + rows.tobytes() + _COPY_TRAILER)
        cursor.execute(
            """INSERT INTO segments_refreshstaging (refresh_token, profile_id, reason)
               SELECT %s, profile_id, %s::jsonb || jsonb_build_object('distance', distance)
                 FROM written_stage""",
            [token, json.dumps(members.reason)],
        )


def _stage_sqlite(token: int, members: WrittenMembers) -> None:
    ids = uuids_unpack(members.profile_ids)
    distances = np.round(np.asarray(members.distances, dtype=np.float64), 4).tolist()
    for start in range(0, len(ids), SQLITE_CHUNK):
        RefreshStaging.objects.bulk_create(
            RefreshStaging(
                refresh_token=token,
                profile_id=pid,
                reason={**members.reason, "distance": d},
            )
            for pid, d in zip(
                ids[start : start + SQLITE_CHUNK],
                distances[start : start + SQLITE_CHUNK],
                strict=True,
            )
        )


def written_segments_swap(
    *,
    members: Sequence[WrittenMembers],
    emptied: Sequence[int] = (),
    emptied_text: str = "the cluster is gone",
) -> SwapResult:
    """Swap in the new members of every segment in ``members`` and empty the
    segments in ``emptied`` (their members exit, and they are disabled), as one
    transaction: a reader sees all of the old sets or all of the new ones.

    Each segment gets a new version; entries and exits go to the outbox with
    source "cluster". Holds the segments' advisory locks exclusively while it
    swaps, so no real-time write or move interleaves."""
    result = SwapResult()
    all_ids = sorted({m.segment_id for m in members} | set(emptied))
    with transaction.atomic():
        locked = {
            s.pk: s
            for s in Segment.objects.select_for_update().filter(pk__in=all_ids).order_by("pk")
        }
        missing = set(all_ids) - set(locked)
        if missing:
            raise ValueError(f"no such segments: {sorted(missing)}")
        not_written = sorted(s.key for s in locked.values() if s.kind != SegmentKind.CLUSTER)
        if not_written:
            raise ValueError(f"segments {not_written} are rule segments: their condition decides")
        _segment_locks(all_ids, exclusive=True)
        # Everything written before this instant is replaced (the set was
        # computed from data read before it).
        started = timezone.now()
        work = [(m.segment_id, m) for m in members] + [(sid, None) for sid in emptied]
        for sid, written in work:
            token = uuid.uuid4().int >> 65
            if written is not None and len(written.profile_ids):
                if connection.vendor == "postgresql":
                    _stage_postgres(token, written)
                else:
                    _stage_sqlite(token, written)
            version = locked[sid].version + 1
            gone = written.gone_text if written is not None else emptied_text
            entered, exited = _swap(sid, token, started, version, source=CLUSTER, gone_text=gone)
            RefreshStaging.objects.filter(refresh_token=token).delete()
            size = Membership.objects.filter(segment_id=sid, exited_at__isnull=True).count()
            update: dict[str, Any] = {"version": version, "size": size, "refreshed_at": started}
            if written is None:
                update["enabled"] = False
            Segment.objects.filter(pk=sid).update(**update)
            result.entered[sid], result.exited[sid] = entered, exited
            result.sizes[sid], result.versions[sid] = size, version
    return result


# -- moving single profiles between runs --------------------------------------------------


def written_segments_hold(segment_ids: Iterable[int]) -> None:
    """Hold these segments' advisory locks shared until the transaction ends: a
    swap of any of them (which holds them exclusively) waits, and one that
    committed before is seen. Call in a transaction."""
    _segment_locks(segment_ids, exclusive=False)


@dataclass(frozen=True)
class Move:
    """Where one profile belongs now among a group of segments (None: in none),
    and why."""

    segment_id: int | None
    reason: dict[str, Any]
    exit_reason: dict[str, Any]


def written_members_move(
    *,
    segment_ids: Sequence[int],
    moves: Mapping[uuid.UUID, Move],
    now: datetime | None = None,
) -> tuple[int, int]:
    """Move profiles between the segments of one group (the clusters of one
    config: a profile is in at most one of them). A profile already where it
    belongs is left alone; otherwise it exits its segment and enters the new
    one, each with an outbox row, sizes adjusted. Locks the profiles; call in a
    transaction. Returns (entered, exited)."""
    if not moves or not segment_ids:
        return 0, 0
    now = now or timezone.now()
    group = set(segment_ids)
    _segment_locks(group, exclusive=False)
    ids = sorted(moves)
    live = set(
        Profile.objects.select_for_update()
        .filter(pk__in=ids, merged_into__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    current: dict[uuid.UUID, list[Membership]] = {}
    for m in Membership.objects.filter(profile_id__in=ids, exited_at__isnull=True).only(
        "id", "segment_id", "profile_id"
    ):
        if m.segment_id in group:
            current.setdefault(m.profile_id, []).append(m)
    versions = dict(Segment.objects.filter(pk__in=group).values_list("pk", "version"))
    entering: list[Membership] = []
    exiting: list[Membership] = []
    changes: list[MembershipChange] = []
    for pid in ids:
        if pid not in live:
            continue
        move = moves[pid]
        target = move.segment_id if move.segment_id in group else None
        rows = current.get(pid, [])
        if [r.segment_id for r in rows] == ([target] if target is not None else []):
            continue
        for row in rows:
            if row.segment_id == target:
                continue
            row.exited_at = now
            row.changed_at = now
            row.exit_reason = move.exit_reason
            exiting.append(row)
            changes.append(
                MembershipChange(
                    segment_id=row.segment_id,
                    profile_id=pid,
                    kind=EXITED,
                    at=now,
                    source=CLUSTER,
                    version=versions.get(row.segment_id, 0),
                )
            )
        if target is not None and all(r.segment_id != target for r in rows):
            entering.append(
                Membership(
                    segment_id=target,
                    profile_id=pid,
                    entered_at=now,
                    reason=move.reason,
                    source=CLUSTER,
                    version=0,
                    changed_at=now,
                )
            )
            changes.append(
                MembershipChange(
                    segment_id=target, profile_id=pid, kind=ENTERED, at=now, source=CLUSTER
                )
            )
    if exiting:
        Membership.objects.bulk_update(exiting, ["exited_at", "changed_at", "exit_reason"])
    if entering:
        Membership.objects.bulk_create(entering)
    if changes:
        MembershipChange.objects.bulk_create(changes)
    delta: dict[int, int] = {}
    for m in entering:
        delta[m.segment_id] = delta.get(m.segment_id, 0) + 1
    for m in exiting:
        delta[m.segment_id] = delta.get(m.segment_id, 0) - 1
    for sid, d in delta.items():
        if d:
            Segment.objects.filter(pk=sid).update(size=F("size") + d)
    return len(entering), len(exiting)


def written_current_segments(
    profile_ids: Sequence[uuid.UUID], segment_ids: Sequence[int]
) -> dict[uuid.UUID, int]:
    """Which of these segments each profile is currently in (one, for a group
    whose segments exclude each other)."""
    group = set(segment_ids)
    out: dict[uuid.UUID, int] = {}
    for pid, sid in Membership.objects.filter(
        profile_id__in=list(profile_ids), exited_at__isnull=True
    ).values_list("profile_id", "segment_id"):
        if sid in group:
            out[pid] = sid
    return out


__all__ = [
    "Move",
    "SwapResult",
    "WrittenMembers",
    "uuids_pack",
    "uuids_unpack",
    "written_current_segments",
    "written_members_move",
    "written_segment_create",
    "written_segment_describe",
    "written_segments_hold",
    "written_segments_swap",
]

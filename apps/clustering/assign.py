"""Between runs: a profile whose features changed goes to the nearest cluster of
its config's current model (the pipeline stage "clustering.assign", after the
features and real-time segments of the same events).

For each enabled config with a succeeded current run whose population includes
the profile, its features are transformed with the run's stored model and the
profile moves to the nearest centroid's segment, only when that changes. A
profile no longer in the population leaves the config's clusters. With no config
at all the stage costs one query.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from django.utils import timezone

from apps.segments.written import (
    Move,
    uuids_unpack,
    written_members_move,
    written_segments_hold,
)

from . import fitting
from .extract import features_extract
from .fitting import Transformer
from .models import ClusteringConfig, ClusteringRun


def _configs() -> list[ClusteringConfig]:
    return list(
        ClusteringConfig.objects.filter(enabled=True, current_run__isnull=False)
        .select_related("current_run")
        .order_by("pk")
    )


def _current_run(config: ClusteringConfig) -> ClusteringRun | None:
    """The config's current run, as of holding its segments' locks: a run that
    swaps in meanwhile waits for this transaction, and one that swapped before is
    the one read (never the segments of a run just replaced)."""
    run = config.current_run
    while run is not None:
        written_segments_hold(s for s in run.model.get("segments", []) if s is not None)
        now_id = (
            ClusteringConfig.objects.filter(pk=config.pk)
            .values_list("current_run_id", flat=True)
            .first()
        )
        if now_id == run.pk:
            return run
        run = ClusteringRun.objects.filter(pk=now_id).first() if now_id else None
    return None


ASSIGN_CHUNK = 2000  # profiles per extraction (SQLite binds one variable per id)


def profiles_assign(
    profile_ids: Sequence[uuid.UUID], *, configs: Sequence[ClusteringConfig] | None = None
) -> tuple[int, int]:
    """Place these profiles in the nearest cluster of each config's current run.
    Returns (entered, exited) over all configs. Call in a transaction."""
    ids = sorted(set(profile_ids))
    if not ids:
        return 0, 0
    configs = _configs() if configs is None else configs
    entered = exited = 0
    now = timezone.now()
    for config in configs:
        run = _current_run(config)
        if run is None or not run.model:
            continue
        for start in range(0, len(ids), ASSIGN_CHUNK):
            e, x = _assign(config, run, ids[start : start + ASSIGN_CHUNK], now)
            entered += e
            exited += x
    return entered, exited


def _assign(
    config: ClusteringConfig, run: ClusteringRun, ids: list[uuid.UUID], now: datetime
) -> tuple[int, int]:
    model: dict[str, Any] = run.model
    segments: list[int | None] = model["segments"]
    names = [f["name"] for f in run.params.get("features", config.features)]
    data = features_extract(
        names,
        now=now,
        population_segment_id=run.params.get("population_segment_id"),
        profile_ids=ids,
    )
    transformer = Transformer.from_json(model["transformer"])
    centroids = np.asarray(model["centroids"], dtype=np.float64)
    labels, distances = fitting.nearest(transformer.apply(data.matrix), centroids)
    moves: dict[uuid.UUID, Move] = {}
    exit_reason = {
        "source": "cluster",
        "text": f"nearer another cluster of run {run.pk}, on a feature change",
        "run": run.pk,
    }
    for pid, label, distance in zip(
        uuids_unpack(data.profile_ids), labels.tolist(), distances.tolist(), strict=True
    ):
        moves[pid] = Move(
            segment_id=segments[label],
            reason={
                "source": "cluster",
                "text": f"nearest centroid of run {run.pk}, assigned on a feature change",
                "run": run.pk,
                "cluster": label,
                "distance": round(distance, 4),
            },
            exit_reason=exit_reason,
        )
    left = {"source": "cluster", "text": f"left the population of {config.key}", "run": run.pk}
    for pid in ids:
        moves.setdefault(pid, Move(segment_id=None, reason={}, exit_reason=left))
    group = [s for s in segments if s is not None]
    return written_members_move(segment_ids=group, moves=moves, now=now)


def clustering_assign(events: list[Any]) -> None:
    """The pipeline stage "clustering.assign"."""
    profile_ids = {e.profile_id for e in events if e.profile_id is not None}
    if not profile_ids:
        return
    configs = _configs()
    if configs:
        profiles_assign(sorted(profile_ids), configs=configs)

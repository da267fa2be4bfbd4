"""Assigning everyone is a chunked map that Celery workers share.

After the fit, a run splits the profile-id space into contiguous ranges (one
``RunChunk`` each, cut where the extracted population has ``chunk_size`` rows).
A chunk is claimed by whoever gets to it first (a ``clustering.assign_chunk``
task on any worker, or the run's own process, which works through the queue
too: a single node, eager Celery and SQLite run every chunk in process through
the same code). Claiming it, a worker extracts its range, transforms it with the
run's stored transformer, takes the nearest centroid (the fit's own label for
the profiles of a fitted sample), stages its memberships under the run's token
(``written_stage_chunk``: a chunk done twice stages its rows once) and stores
its partial sums on the chunk. The run then combines them (``chunks_reduce``):
sizes, per-cluster feature sums (centroids and means in original units), the
scaled sums the persona z-scores need, per-previous-cluster sums (continuity),
and the contingency against the previous run (the stability ARI). One swap
makes the staged version current.

A chunk that fails, or whose worker stops (claimed longer ago than its time
limit), fails the run: nothing is swapped, the staged rows are dropped, and the
previous memberships stay.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.segments.written import UUID_DTYPE, written_stage_chunk

from . import fitting
from .extract import Extracted, features_extract
from .fitting import Transformer
from .models import ChunkStatus, ClusteringRun, RunChunk, RunStatus

logger = logging.getLogger(__name__)

CHUNK_TIME_LIMIT = 600  # seconds a chunk may take (the task's soft limit)
CHUNK_HARD_LIMIT = CHUNK_TIME_LIMIT + 60  # the task's hard limit: past it, its worker is gone
# A chunk claimed longer ago than this fails the run: a chunk taken back after
# its worker died (at CHUNK_HARD_LIMIT) had its own full time limit too.
CHUNK_LOST_AFTER = 2 * CHUNK_HARD_LIMIT + 60
POLL_SECONDS = 0.5
# Profiles per chunk, and whether the run's own process assigns chunks too
# (settings.CDP["CLUSTERING_CHUNK_SIZE"] and ["CLUSTERING_ASSIGN_LOCAL"] override).
CHUNK_SIZE = 250_000
_LAST_ID = uuid.UUID(int=2**128 - 1)


class ChunkFailed(Exception):
    pass


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class AssignModel:
    """What a chunk needs to assign its profiles, as the run stored it."""

    features: list[str]
    population_segment_id: int | None
    previous_segments: list[int]
    extracted_at: datetime
    transformer: Transformer
    centroids: np.ndarray

    @classmethod
    def of_run(cls, run: ClusteringRun) -> AssignModel:
        m = run.model
        return cls(
            features=[f["name"] for f in run.params["features"]],
            population_segment_id=run.params.get("population_segment_id"),
            previous_segments=list(m["previous_segments"]),
            extracted_at=datetime.fromisoformat(m["extracted_at"]),
            transformer=Transformer.from_json(m["transformer"]),
            centroids=np.asarray(m["centroids"], dtype=np.float64),
        )


# -- planning -----------------------------------------------------------------------


def chunks_plan(
    run: ClusteringRun,
    profile_ids: np.ndarray,
    chunk_size: int,
    kept: dict[bytes, int] | None = None,
) -> list[tuple[RunChunk, slice]]:
    """The run's chunks: contiguous id ranges covering every possible id, cut
    every ``chunk_size`` extracted rows (profile ids sorted). Each with its
    slice of the extracted rows. ``kept``: the fitted sample's own labels."""
    n = len(profile_ids)
    size = max(int(chunk_size), 1)
    starts = list(range(0, max(n, 1), size))
    raw = np.ascontiguousarray(profile_ids).view(UUID_DTYPE).reshape(-1)
    firsts = [uuid.UUID(int=0)] + [uuid.UUID(bytes=raw[s].tobytes()) for s in starts[1:]]
    by_chunk: list[dict[str, int]] = [{} for _ in starts]
    if kept:
        bounds = np.array([f.bytes for f in firsts[1:]], dtype="S16")
        pids = list(kept)
        at = np.searchsorted(bounds, np.array(pids, dtype="S16"), side="right")
        for pid, i in zip(pids, at.tolist(), strict=True):
            by_chunk[i][uuid.UUID(bytes=pid).hex] = int(kept[pid])
    planned = []
    for i, start in enumerate(starts):
        last = uuid.UUID(int=firsts[i + 1].int - 1) if i + 1 < len(starts) else _LAST_ID
        chunk = RunChunk(
            run=run, index=i, first_id=firsts[i], last_id=last, kept_labels=by_chunk[i]
        )
        planned.append((chunk, slice(start, min(start + size, n))))
    RunChunk.objects.bulk_create([c for c, _ in planned])
    return planned


def chunk_claim(
    run_id: int, *, index: int | None = None, last_first: bool = False
) -> RunChunk | None:
    """Take a chunk of a running run (this one, or the first or last to take):
    a queued one, or one claimed longer ago than a chunk's hard time limit (its
    worker died: a redelivered task, or the run's own process, takes it back).
    None when there is none left to take, or the run is no longer running."""
    stale = timezone.now() - timedelta(seconds=CHUNK_HARD_LIMIT)
    with transaction.atomic():
        takeable = RunChunk.objects.select_for_update(skip_locked=True, of=("self",)).filter(
            Q(status=ChunkStatus.QUEUED) | Q(status=ChunkStatus.RUNNING, claimed_at__lt=stale),
            run_id=run_id,
            run__status=RunStatus.RUNNING,
        )
        if index is not None:
            takeable = takeable.filter(index=index)
        chunk = takeable.order_by("-index" if last_first else "index").first()
        if chunk is None:
            return None
        chunk.status = ChunkStatus.RUNNING
        chunk.claimed_at = timezone.now()
        chunk.done_by = _worker_name()
        chunk.save(update_fields=["status", "claimed_at", "done_by"])
    return chunk


def chunks_abandon(run_id: int, why: str) -> None:
    """A run that failed: its chunks not done are failed (a chunk still at work
    stages nothing after this, and a queued one is never taken)."""
    RunChunk.objects.filter(
        run_id=run_id, status__in=[ChunkStatus.QUEUED, ChunkStatus.RUNNING]
    ).update(status=ChunkStatus.FAILED, error=why[:500])


# -- one chunk ----------------------------------------------------------------------


def _partial(
    model: AssignModel, data: Extracted, scaled: np.ndarray, x: np.ndarray, labels: np.ndarray
) -> dict[str, Any]:
    t = model.transformer
    k = len(model.centroids)
    raw = np.array(data.matrix[:, t.columns], dtype=np.float64, copy=True)
    missing = np.isnan(raw)
    if missing.any():
        raw[missing] = np.take(np.asarray(t.fill), np.nonzero(missing)[1])
    assigned = labels >= 0
    sizes = np.bincount(labels[assigned], minlength=k)
    raw_sums = np.zeros((k, raw.shape[1]))
    scaled_sums = np.zeros((k, scaled.shape[1]))
    np.add.at(raw_sums, labels[assigned], raw[assigned])
    np.add.at(scaled_sums, labels[assigned], scaled[assigned])
    previous: dict[str, Any] = {}
    for sid in np.unique(data.previous[data.previous > 0]).tolist():
        mine = data.previous == sid
        shared = mine & assigned
        previous[str(sid)] = {
            "count": int(mine.sum()),
            "x_sum": x[mine].sum(axis=0).tolist(),
            "labels": np.bincount(labels[shared], minlength=k).tolist(),
        }
    return {
        "n": len(data),
        "sizes": sizes.tolist(),
        "raw_sums": raw_sums.tolist(),
        "scaled_sums": scaled_sums.tolist(),
        "raw_sum": raw.sum(axis=0).tolist(),
        "scaled_sum": scaled.sum(axis=0).tolist(),
        "scaled_sumsq": (scaled**2).sum(axis=0).tolist(),
        "previous": previous,
    }


def chunk_assign(
    model: AssignModel, data: Extracted, kept: dict[str, int]
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Each row's cluster (-1: noise of a fitted sample) and distance, and the
    chunk's partial sums."""
    scaled = model.transformer.scaled(data.matrix)
    x = model.transformer.project(scaled)
    labels, distances = fitting.nearest(x, model.centroids)
    if kept and len(data):
        wanted = [uuid.UUID(h).bytes for h in kept]
        ids = np.ascontiguousarray(data.profile_ids).view(UUID_DTYPE).reshape(-1)
        at = np.searchsorted(ids.view("S16"), np.array(wanted, dtype="S16"))
        for pos, label, pid in zip(at.tolist(), kept.values(), wanted, strict=True):
            if pos < len(ids) and ids[pos].tobytes() == pid:
                labels[pos] = label
                distances[pos] = (
                    float(np.sqrt(((x[pos] - model.centroids[label]) ** 2).sum()))
                    if label >= 0
                    else np.nan
                )
    return labels, distances, _partial(model, data, scaled, x, labels)


def chunk_run(chunk: RunChunk, model: AssignModel, data: Extracted | None = None) -> None:
    """Do a claimed chunk: extract its range (unless the run gives its rows),
    assign, stage, and store its partial sums. A failure is stored on the chunk."""
    clock = time.monotonic()
    try:
        if data is None:
            data = features_extract(
                model.features,
                now=model.extracted_at,
                population_segment_id=model.population_segment_id,
                previous_segments=model.previous_segments,
                id_range=(chunk.first_id, chunk.last_id),
            )
        labels, distances, partial = chunk_assign(model, data, chunk.kept_labels)
        placed = labels >= 0
        with transaction.atomic():
            # Still ours and its run still running (a run that failed has failed
            # its chunks before dropping what they staged): stage and be done in
            # one transaction, the chunk's row locked.
            mine = (
                RunChunk.objects.select_for_update(of=("self",))
                .filter(
                    pk=chunk.pk,
                    status=ChunkStatus.RUNNING,
                    claimed_at=chunk.claimed_at,
                    run__status=RunStatus.RUNNING,
                )
                .exists()
            )
            if not mine:
                logger.info(
                    "chunk %s of clustering run %s: no longer this worker's, nothing staged",
                    chunk.index,
                    chunk.run_id,
                )
                chunk.refresh_from_db(fields=["status", "error"])
                return
            chunk.staged_rows = written_stage_chunk(
                token=chunk.run_id,
                chunk=chunk.index,
                slots=labels[placed],
                profile_ids=data.profile_ids[placed],
                distances=np.nan_to_num(distances[placed]),
            )
            chunk.status, chunk.partial, chunk.error = ChunkStatus.DONE, partial, ""
            chunk.seconds = round(time.monotonic() - clock, 4)
            chunk.save(update_fields=["status", "partial", "error", "seconds", "staged_rows"])
    except BaseException as exc:
        logger.exception("chunk %s of clustering run %s failed", chunk.index, chunk.run_id)
        chunk.status, chunk.error = ChunkStatus.FAILED, f"{type(exc).__name__}: {exc}"[:500]
        chunk.seconds = round(time.monotonic() - clock, 4)
        RunChunk.objects.filter(
            pk=chunk.pk, status=ChunkStatus.RUNNING, claimed_at=chunk.claimed_at
        ).update(status=chunk.status, error=chunk.error, seconds=chunk.seconds)
        # A soft time limit is the limit of the task this chunk runs in: in a
        # chunk task, the chunk's own; worked locally, the run's. It goes on up,
        # so that the run reports its time limit, not "chunk N failed".
        if not isinstance(exc, Exception) or isinstance(exc, SoftTimeLimitExceeded):
            raise


# -- the map, from the run's side ----------------------------------------------------


def chunks_work(
    run: ClusteringRun,
    planned: list[tuple[RunChunk, slice]],
    model: AssignModel,
    data: Extracted,
    *,
    dispatch: bool,
    local: bool,
    deadline: float,
) -> list[RunChunk]:
    """Run the map to its end: queue a task per chunk (``dispatch``), work
    through the queue here too (``local``; from the last chunk when workers take
    them from the first), and wait for every chunk. Returns the chunks, done;
    raises ChunkFailed when one failed or its worker stopped."""
    if dispatch:
        from .tasks import assign_chunk

        for chunk, _ in planned:
            assign_chunk.delay(run.pk, chunk.index)
    slices = {c.index: part for c, part in planned}
    while True:
        if time.monotonic() > deadline:
            raise fitting.RunTimeout()
        if local:
            claimed = chunk_claim(run.pk, last_first=dispatch)
            if claimed is not None:
                part = slices[claimed.index]
                chunk_run(
                    claimed,
                    model,
                    Extracted(
                        profile_ids=data.profile_ids[part],
                        matrix=data.matrix[part],
                        previous=data.previous[part],
                    ),
                )
                if claimed.status == ChunkStatus.FAILED:
                    raise ChunkFailed(f"chunk {claimed.index} failed: {claimed.error}")
                continue
        states = list(
            RunChunk.objects.filter(run=run)
            .order_by("index")
            .values("index", "status", "claimed_at", "error")
        )
        failed = [c for c in states if c["status"] == ChunkStatus.FAILED]
        if failed:
            raise ChunkFailed(f"chunk {failed[0]['index']} failed: {failed[0]['error']}")
        lost = timezone.now() - timedelta(seconds=CHUNK_LOST_AFTER)
        stopped = [
            c
            for c in states
            if c["status"] == ChunkStatus.RUNNING and c["claimed_at"] and c["claimed_at"] < lost
        ]
        if stopped:
            raise ChunkFailed(f"chunk {stopped[0]['index']}: its worker stopped before it finished")
        if all(c["status"] == ChunkStatus.DONE for c in states):
            return list(RunChunk.objects.filter(run=run).order_by("index"))
        time.sleep(POLL_SECONDS)


# -- the reduce -----------------------------------------------------------------------


@dataclass
class Reduced:
    n: int
    sizes: np.ndarray  # per cluster
    raw_means: np.ndarray  # per cluster, original units (filled)
    scaled_means: np.ndarray  # per cluster
    population_raw: np.ndarray
    population_scaled: np.ndarray
    population_scaled_sd: np.ndarray
    previous_means: dict[int, np.ndarray]  # previous segment -> its members' mean in x
    contingency: np.ndarray  # previous segments (sorted) x new clusters, shared profiles
    staged: int = 0  # memberships the chunks staged (the swap checks they are there)


def chunks_reduce(partials: list[dict[str, Any]], k: int, width: int, dims: int) -> Reduced:
    n = sum(int(p["n"]) for p in partials)
    sizes = np.zeros(k, dtype=np.int64)
    raw_sums, scaled_sums = np.zeros((k, width)), np.zeros((k, width))
    raw_sum, scaled_sum, scaled_sumsq = np.zeros(width), np.zeros(width), np.zeros(width)
    prev_count: dict[int, int] = {}
    prev_sum: dict[int, np.ndarray] = {}
    prev_labels: dict[int, np.ndarray] = {}
    for p in partials:
        sizes += np.asarray(p["sizes"], dtype=np.int64)
        raw_sums += np.asarray(p["raw_sums"]).reshape(k, width)
        scaled_sums += np.asarray(p["scaled_sums"]).reshape(k, width)
        raw_sum += np.asarray(p["raw_sum"]).reshape(width)
        scaled_sum += np.asarray(p["scaled_sum"]).reshape(width)
        scaled_sumsq += np.asarray(p["scaled_sumsq"]).reshape(width)
        for key, item in p["previous"].items():
            sid = int(key)
            prev_count[sid] = prev_count.get(sid, 0) + int(item["count"])
            prev_sum[sid] = prev_sum.get(sid, np.zeros(dims)) + np.asarray(item["x_sum"])
            prev_labels[sid] = prev_labels.get(sid, np.zeros(k, dtype=np.int64)) + np.asarray(
                item["labels"], dtype=np.int64
            )
    counts = np.maximum(sizes, 1)[:, None]
    whole = max(n, 1)
    population_scaled = scaled_sum / whole
    variance = np.maximum(scaled_sumsq / whole - population_scaled**2, 0.0)
    previous_ids = sorted(prev_count)
    return Reduced(
        n=n,
        sizes=sizes,
        raw_means=raw_sums / counts,
        scaled_means=scaled_sums / counts,
        population_raw=raw_sum / whole,
        population_scaled=population_scaled,
        population_scaled_sd=np.sqrt(variance),
        previous_means={sid: prev_sum[sid] / prev_count[sid] for sid in previous_ids},
        contingency=(
            np.array([prev_labels[sid] for sid in previous_ids], dtype=np.int64)
            if previous_ids
            else np.zeros((0, k), dtype=np.int64)
        ),
    )


def ari_from_contingency(table: np.ndarray) -> tuple[float | None, int]:
    """The adjusted Rand index of two labellings given as their contingency
    table (scikit-learn's ``adjusted_rand_score`` from the pair counts), and the
    number of profiles it covers; None under two profiles."""
    table = np.asarray(table, dtype=np.int64)
    n = int(table.sum())
    if n < 2:
        return None, n
    pairs = float((table * (table - 1)).sum()) / 2
    rows = table.sum(axis=1)
    cols = table.sum(axis=0)
    row_pairs = float((rows * (rows - 1)).sum()) / 2
    col_pairs = float((cols * (cols - 1)).sum()) / 2
    total = n * (n - 1) / 2
    expected = row_pairs * col_pairs / total
    best = (row_pairs + col_pairs) / 2
    if best == expected:  # both labellings trivially the same (one cluster, or singletons)
        return 1.0, n
    return (pairs - expected) / (best - expected), n


__all__ = [
    "CHUNK_SIZE",
    "CHUNK_TIME_LIMIT",
    "AssignModel",
    "ChunkFailed",
    "Reduced",
    "ari_from_contingency",
    "chunk_assign",
    "chunk_claim",
    "chunk_run",
    "chunks_plan",
    "chunks_reduce",
    "chunks_work",
]

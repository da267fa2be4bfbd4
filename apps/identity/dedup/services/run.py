"""Probabilistic deduplication runs and the review decisions.

A run reads the live profiles' traits, blocks them into candidate pairs, compares
each pair field by field, scores it with Fellegi-Sunter weights (estimated by EM on
full runs) and then:

- pairs at least as probable one person as the auto-merge probability (0.99 by
  default; ``Model.probability``, the probability the review queue shows), with
  no veto, are merged through
  ``apps.identity.services.profile_merge``, the one safe merge path (it refuses,
  for instance, two profiles with different user ids: the pair is then recorded
  as refused);
- pairs between the review probability (0.5) and the auto-merge one wait in the
  review queue, with the pairs a veto held back from an automatic merge;
- pairs an admin marked "not the same person" are never proposed again, even
  after either profile is merged into another one.

An incremental run (the default once a full run succeeded with the same
configuration) compares only the profiles changed since the last successful run
started, against every live profile that shares a block with them (found through
the ``DedupBlockKey`` index).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from django.db import connection
from django.db.models import Count, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from apps.identity.models import Profile

from ..blocking import BlockingStats, BlockKeys, block_keys, block_limit, candidate_pairs
from ..compare import IndexArray
from ..fellegi_sunter import Model, initial_model
from ..frequency import ValueFrequencies
from ..models import DedupBlockKey, DedupRun, DuplicateCandidate
from ..records import Records, build_records
from .candidates import (
    candidates_build,
    candidates_write,
    chunks,
    dead_pending_delete,
    drop_decided,
    probability_set,
    stale_pending_delete,
)
from .config import DedupSettings, Progress, dedup_settings_load
from .decisions import auto_merge, automatic_select, review_select
from .frequencies import frequencies_load, frequencies_rebuild
from .index import index_insert, index_rebuild
from .scoring import (
    EM_MIN_PAIRS,
    compare_all,
    estimate_model,
    pairs_score,
    review_order,
    without_estimate,
)

logger = logging.getLogger(__name__)

LOAD_CHUNK = 5_000
_RUN_LOCK_KEY = 0x6465647570  # "dedup": one run at a time (PostgreSQL advisory lock)


@dataclass
class _Outcome:
    scanned: int = 0
    loaded: int = 0
    pairs: int = 0
    merged: int = 0
    queued: int = 0
    refused: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    blocking: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    score_bars: dict[str, float] = field(default_factory=dict)


class _Clock:
    def __init__(self, outcome: _Outcome) -> None:
        self.outcome = outcome

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.outcome.timings[name] = round(
                self.outcome.timings.get(name, 0.0) + time.perf_counter() - start, 3
            )


def _noop(stage: str, done: int, total: int) -> None:
    return None


@contextlib.contextmanager
def _run_lock() -> Iterator[bool]:
    """One run at a time (PostgreSQL; SQLite serializes writers anyway)."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [_RUN_LOCK_KEY])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [_RUN_LOCK_KEY])


def dedup_run(*, full: bool = False, progress: Progress | None = None) -> DedupRun | None:
    """Find duplicate profiles; merge the sure ones, queue the likely ones.

    Incremental unless ``full`` or no earlier run succeeded with the same
    configuration. Returns the run, or None when another run holds the lock.
    """
    with _run_lock() as acquired:
        if not acquired:
            logger.info("dedup run skipped: another run is in progress")
            return None
        return _run(full=full, progress=progress or _noop)


def _run(*, full: bool, progress: Progress) -> DedupRun:
    settings = dedup_settings_load()
    fingerprint = settings.fingerprint()
    # Runs left "running" by a crash: we hold the lock, so none is really running.
    DedupRun.objects.filter(status=DedupRun.Status.RUNNING).update(
        status=DedupRun.Status.FAILED, error="interrupted", finished_at=timezone.now()
    )
    last = DedupRun.objects.filter(status=DedupRun.Status.SUCCEEDED).order_by("-started_at").first()
    incremental = (
        not full
        and last is not None
        and last.config_fingerprint == fingerprint
        and bool(last.parameters.get("model"))
    )
    run = DedupRun.objects.create(
        started_at=timezone.now(),
        mode=DedupRun.Mode.INCREMENTAL if incremental else DedupRun.Mode.FULL,
        config_fingerprint=fingerprint,
    )
    start = time.perf_counter()
    outcome = _Outcome()
    try:
        if incremental:
            assert last is not None
            model = Model.from_dict(last.parameters["model"], settings.specs)
            _incremental(run, last, settings, model, outcome, progress)
        else:
            _full(run, settings, outcome, progress)
    except Exception as exc:
        run.status = DedupRun.Status.FAILED
        run.error = f"{type(exc).__name__}: {exc}"[:5000]
        run.finished_at = timezone.now()
        run.duration_seconds = round(time.perf_counter() - start, 3)
        run.parameters = {"timings": outcome.timings}
        run.save()
        logger.exception("dedup run %s failed", run.pk)
        raise
    run.status = DedupRun.Status.SUCCEEDED
    run.finished_at = timezone.now()
    run.duration_seconds = round(time.perf_counter() - start, 3)
    run.profiles_scanned = outcome.scanned
    run.profiles_loaded = outcome.loaded
    run.pairs_compared = outcome.pairs
    run.auto_merged = outcome.merged
    run.queued = outcome.queued
    run.refused = outcome.refused
    run.parameters = {
        "model": outcome.model,
        "blocking": outcome.blocking,
        "timings": outcome.timings,
        "thresholds": {
            "auto_merge_probability": settings.auto_merge_probability,
            "review_probability": settings.review_probability,
            # What the bars meant in scores for this run's prior.
            **outcome.score_bars,
        },
    }
    run.save()
    logger.info(
        "dedup %s run %s: %d profiles, %d pairs, %d merged, %d queued, %d refused",
        run.mode,
        run.pk,
        outcome.scanned,
        outcome.pairs,
        outcome.merged,
        outcome.queued,
        outcome.refused,
    )
    return run


def _profiles_with_traits() -> Any:
    return Profile.objects.live().exclude(traits={})


def _traits_rows(queryset: Any) -> Iterator[tuple[uuid.UUID, Any]]:
    """(id, traits) of the queryset's profiles. Traits come as text and are parsed
    with orjson: several times faster than the JSON field's own decoding."""
    text = queryset.annotate(traits_text=Cast("traits", output_field=TextField()))
    for profile_id, traits in text.values_list("id", "traits_text").iterator(chunk_size=LOAD_CHUNK):
        yield profile_id, orjson.loads(traits) if traits else {}


def _load(queryset: Any, progress: Progress, total: int) -> list[tuple[uuid.UUID, Any]]:
    rows: list[tuple[uuid.UUID, Any]] = []
    for row in _traits_rows(queryset):
        rows.append(row)
        if len(rows) % LOAD_CHUNK == 0:
            progress("load", len(rows), total)
    progress("load", len(rows), total)
    return rows


def _mark_merged(records: Records, *, every_live: bool = False) -> None:
    """Which of the records' profiles absorbed others (see ``Records.merged``).
    ``every_live``: the records are every live profile with traits (a full run), so
    one query for all profiles that absorbed others is enough (20 queries of 5,000
    ids each took 1.5-3 s at 100,000 profiles)."""
    merged: set[uuid.UUID] = set()
    absorbed = Profile.objects.filter(merged_into__isnull=False)
    if every_live:
        merged.update(absorbed.values_list("merged_into_id", flat=True).distinct())
    else:
        for chunk in chunks(records.ids, 5000):
            merged.update(
                absorbed.filter(merged_into_id__in=chunk).values_list("merged_into_id", flat=True)
            )
    records.merged = np.fromiter((pid in merged for pid in records.ids), bool, len(records))


def _full(run: DedupRun, settings: DedupSettings, outcome: _Outcome, progress: Progress) -> None:
    clock = _Clock(outcome)
    with clock.stage("load"):
        queryset = _profiles_with_traits()
        total = queryset.count()
        rows = _load(queryset, progress, total)
        records = build_records(rows, settings.specs)
        del rows
        _mark_merged(records, every_live=True)
    outcome.scanned = outcome.loaded = len(records)
    with clock.stage("block"):
        keys = block_keys(records)
        left, right, stats = candidate_pairs(
            keys, len(records), max_block_size=settings.max_block_size
        )
        outcome.blocking = _blocking_report(stats, len(records))
        progress("block", 1, 1)
    with clock.stage("index"):
        index_rebuild(records, keys)
        frequencies = frequencies_rebuild(records, settings.specs)
    _score_and_decide(
        run,
        settings,
        records,
        left,
        right,
        None,
        frequencies,
        outcome,
        progress,
        clock,
        stats,
        changed=None,
    )


def _incremental(
    run: DedupRun,
    last: DedupRun,
    settings: DedupSettings,
    model: Model,
    outcome: _Outcome,
    progress: Progress,
) -> None:
    clock = _Clock(outcome)
    with clock.stage("load"):
        changed_ids = list(
            Profile.objects.filter(updated_at__gt=last.started_at).values_list("id", flat=True)
        )
        # Keys of merged-away profiles and of changed ones are stale.
        DedupBlockKey.objects.filter(profile__merged_into__isnull=False).delete()
        for chunk in chunks(changed_ids, 5000):
            DedupBlockKey.objects.filter(profile_id__in=chunk).delete()
        queryset = _profiles_with_traits().filter(updated_at__gt=last.started_at)
        changed_rows = _load(queryset, progress, len(changed_ids))
        changed_records = build_records(changed_rows, settings.specs)
        changed_keys = block_keys(changed_records)
        neighbour_ids: set[uuid.UUID] = set()
        oversized: list[int] = []
        # Each key's bound (a pass may have its own below max_block_size).
        limit_of = {
            key: block_limit(changed_keys.pass_names[p], settings.max_block_size)
            for key, p in zip(changed_keys.keys.tolist(), changed_keys.passes.tolist(), strict=True)
        }
        for chunk in chunks(np.unique(changed_keys.keys).tolist(), 5000):
            # Not the holders of oversized blocks: candidate_pairs skips those
            # blocks, and loading them (a common name, a big building) is most
            # of an incremental run's reading.
            # The changed profiles' pairs in those blocks are skipped too (below),
            # as a full run skips them.
            counted = (
                DedupBlockKey.objects.filter(key__in=chunk)
                .values("key")
                .annotate(holders=Count("profile_id"))
                .values_list("key", "holders")
            )
            small: list[int] = []
            for key, holders in counted:
                (small if holders < limit_of[key] else oversized).append(key)
            neighbour_ids.update(
                DedupBlockKey.objects.filter(key__in=small).values_list("profile_id", flat=True)
            )
        neighbour_ids -= set(changed_records.ids)
        neighbour_rows: list[tuple[uuid.UUID, Any]] = []
        for chunk in chunks(sorted(neighbour_ids), 5000):
            neighbour_rows += list(_traits_rows(_profiles_with_traits().filter(id__in=chunk)))
        records = build_records(changed_rows + neighbour_rows, settings.specs)
        _mark_merged(records)
        changed = np.zeros(len(records), dtype=bool)
        changed[: len(changed_rows)] = True
    outcome.scanned = len(changed_rows)
    outcome.loaded = len(records)
    with clock.stage("block"):
        keys = block_keys(records)
        kept = ~np.isin(keys.keys, np.array(oversized, dtype=np.int64))
        left, right, stats = candidate_pairs(
            BlockKeys(keys.rows[kept], keys.keys[kept], keys.passes[kept], keys.pass_names),
            len(records),
            max_block_size=settings.max_block_size,
            changed=changed,
        )
        outcome.blocking = _blocking_report(stats, len(records))
        progress("block", 1, 1)
    with clock.stage("index"):
        index_insert(records, keys, changed)
        saved = last.parameters["model"].get("frequencies", {})
        frequencies = frequencies_load(records, settings.specs, saved)
    _score_and_decide(
        run,
        settings,
        records,
        left,
        right,
        model,
        frequencies,
        outcome,
        progress,
        clock,
        stats,
        changed=changed,
    )


def _blocking_report(stats: BlockingStats, n: int) -> dict[str, Any]:
    all_pairs = n * (n - 1) // 2
    return {
        "pairs": stats.pairs,
        "all_pairs": all_pairs,
        "reduction": round(1 - stats.pairs / all_pairs, 6) if all_pairs else 0.0,
        "per_pass": stats.per_pass,
        "oversized_blocks": stats.oversized_blocks,
        "largest_block": stats.largest_block,
    }


def _score_and_decide(
    run: DedupRun,
    settings: DedupSettings,
    records: Records,
    left: IndexArray,
    right: IndexArray,
    model: Model | None,
    frequencies: dict[str, ValueFrequencies],
    outcome: _Outcome,
    progress: Progress,
    clock: _Clock,
    stats: BlockingStats,
    *,
    changed: np.ndarray | None,
) -> None:
    with clock.stage("compare"):
        keep = drop_decided(records, left, right)
        left, right = left[keep], right[keep]
        outcome.pairs = len(left)
        level, swapped = compare_all(records, left, right, progress)
    with clock.stage("estimate"):
        if model is None:
            model = initial_model(settings.specs)
            if settings.estimate_weights and len(level) >= EM_MIN_PAIRS:
                codes = left * len(records) + right
                model = estimate_model(records, level, codes, stats, model)
            else:
                model = without_estimate(model)
        scores, adjustments = pairs_score(records, left, right, level, swapped, model, frequencies)
        progress("estimate", 1, 1)
    with clock.stage("decide"):
        # Pairs below the review bar's score can reach neither bar: not built.
        review_score = model.score_at(settings.review_probability)
        outcome.score_bars = {
            "auto_merge_score": round(model.score_at(settings.auto_merge_probability), 3),
            "review_score": round(review_score, 3),
        }
        order = review_order(scores, review_score)
        candidates = candidates_build(
            run, records, left[order], right[order], scores[order], model, adjustments[order]
        )
        auto = automatic_select(candidates, settings.auto_merge_probability)
        # The vetoes automatic_select added (FATHER_AND_SON) count in the probability.
        probability_set(model, candidates)
        # Saved after candidates_build, which fits the veto weight of a full run.
        outcome.model = {
            **model.as_dict(),
            "frequencies": {name: table.summary() for name, table in frequencies.items()},
        }
        candidates = review_select(
            candidates,
            model,
            auto_probability=settings.auto_merge_probability,
            review_probability=settings.review_probability,
        )
    with clock.stage("merge"):
        outcome.merged, outcome.refused = auto_merge(run, auto, progress)
    with clock.stage("save"):
        automatic = {id(c) for c in auto}
        candidates_write([c for c in candidates if id(c) not in automatic])
        stale_pending_delete(run, records, changed)
        dead_pending_delete()
        outcome.queued = DuplicateCandidate.objects.filter(
            run=run, status=DuplicateCandidate.Status.PENDING
        ).count()

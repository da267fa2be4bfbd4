"""Probabilistic deduplication runs and the review decisions.

A run reads the live profiles' traits, blocks them into candidate pairs, compares
each pair field by field, scores it with Fellegi-Sunter weights (estimated by EM on
full runs) and then:

- pairs at or above the auto-merge threshold, with no veto, are merged through
  ``apps.identity.services.profile_merge``, the one safe merge path (it refuses,
  for instance, two profiles with different user ids: the pair is then recorded
  as refused);
- pairs between the two thresholds wait in the review queue;
- pairs an admin marked "not the same person" are never proposed again, even
  after either profile is merged into another one.

An incremental run (the default once a full run succeeded with the same
configuration) compares only the profiles changed since the last successful run
started, against every live profile that shares a block with them (found through
the ``DedupBlockKey`` index).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import orjson
from django.db import connection, transaction
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from apps.identity.models import Profile, ProfileMerge

from .blocking import BlockingStats, BlockKeys, block_keys, candidate_pairs
from .compare import LEVELS, Comparison, IndexArray, compare_pairs
from .fellegi_sunter import (
    Model,
    estimate_lambda,
    estimate_sessions,
    estimate_u,
    initial_model,
)
from .models import DedupBlockKey, DedupConfig, DedupField, DedupRun, DuplicateCandidate
from .records import BUILTIN_FIELDS, FieldSpec, Records, build_records

logger = logging.getLogger(__name__)

# (stage, done, total): called as a run goes; the dedupe command draws progress bars.
Progress = Callable[[str, int, int], None]

COMPARE_CHUNK = 200_000
EM_SAMPLE = 400_000
U_SAMPLE = 60_000
MERGE_BATCH = 500
LOAD_CHUNK = 5_000
_RUN_LOCK_KEY = 0x6465647570  # "dedup": one run at a time (PostgreSQL advisory lock)

# Pairs with more vetoes than this are not even queued for review.
QUEUE_MAX_VETOES = 1
# Below this many candidate pairs EM has too little to go on: defaults are used.
EM_MIN_PAIRS = 2_000


def vetoes(level: dict[str, int]) -> list[str]:
    """Why a pair must not merge automatically whatever its score (it goes to review).

    ``level`` maps field name -> agreement level (-1 missing, 0 different, ...);
    fields that are not configured are simply absent.
    """

    def at(name: str) -> int:
        return level.get(name, -1)

    reasons = []
    contact = at("email") >= 2 or at("phone") >= 1
    # An email that differs as the first names do (jon.smith@, john.smith@) is no
    # independent evidence that the names are one person's.
    same_contact = at("email") == 3 or at("phone") >= 1
    if at("first_name") == 0 and not (same_contact and at("birthday") == 2):
        # Unless email or phone and the birthday agree: a nickname we do not know.
        reasons.append("first names differ")
    elif 0 < at("first_name") < 3 and not same_contact:
        # Aidan and Aiden, same birthday and address: twins as often as a typo.
        reasons.append("first names only alike, and no shared email or phone")
    if at("last_name") == 0:
        reasons.append("last names differ")
    if at("birthday") == 0:
        reasons.append("birthdays differ")
    # Same name at the same door, and no email or phone that contradicts it (one
    # side simply has none): one person. With two different emails it is as likely
    # a father and son.
    same_door = (
        at("address") == 3
        and at("first_name") == 3
        and at("last_name") == 3
        and at("email") in (-1, 3)
        and at("phone") != 0
    )
    if not (contact or at("birthday") == 2 or same_door):
        reasons.append("no email, phone or birthday in common")
    return reasons


# --- configuration -----------------------------------------------------------------


@dataclass(frozen=True)
class DedupSettings:
    auto_merge_threshold: float
    review_threshold: float
    estimate_weights: bool
    max_block_size: int
    specs: tuple[FieldSpec, ...]

    def fingerprint(self) -> str:
        """Changes whenever a run with this configuration could find other pairs."""
        data = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(data.encode()).hexdigest()


def dedup_config_ensure() -> DedupConfig:
    """The configuration row, with the built-in fields on first use."""
    config, _ = DedupConfig.objects.get_or_create(pk=DedupConfig.SINGLETON_ID)
    if not DedupField.objects.filter(config=config).exists():
        DedupField.objects.bulk_create(
            [
                DedupField(
                    config=config,
                    name=spec.name,
                    trait=spec.trait,
                    comparator=spec.comparator,
                    position=(i + 1) * 10,
                )
                for i, spec in enumerate(BUILTIN_FIELDS)
            ],
            ignore_conflicts=True,
        )
    return config


def dedup_settings_load() -> DedupSettings:
    config = dedup_config_ensure()
    specs = tuple(
        FieldSpec(
            name=f.name,
            trait=f.trait,
            comparator=f.comparator,
            blocking=f.blocking,
            m=tuple(f.m_probabilities) if f.m_probabilities is not None else None,
            u=tuple(f.u_probabilities) if f.u_probabilities is not None else None,
            weights=tuple(f.weights) if f.weights is not None else None,
        )
        for f in DedupField.objects.filter(config=config, enabled=True).order_by("position", "name")
        if f.comparator in LEVELS
    )
    return DedupSettings(
        auto_merge_threshold=config.auto_merge_threshold,
        review_threshold=config.review_threshold,
        estimate_weights=config.estimate_weights,
        max_block_size=config.max_block_size,
        specs=specs,
    )


# --- the run -------------------------------------------------------------------------


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
            "auto_merge": settings.auto_merge_threshold,
            "review": settings.review_threshold,
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


def _full(run: DedupRun, settings: DedupSettings, outcome: _Outcome, progress: Progress) -> None:
    clock = _Clock(outcome)
    with clock.stage("load"):
        queryset = _profiles_with_traits()
        total = queryset.count()
        rows = _load(queryset, progress, total)
        records = build_records(rows, settings.specs)
        del rows
    outcome.scanned = outcome.loaded = len(records)
    with clock.stage("block"):
        keys = block_keys(records)
        left, right, stats = candidate_pairs(
            keys, len(records), max_block_size=settings.max_block_size
        )
        outcome.blocking = _blocking_report(stats, len(records))
        progress("block", 1, 1)
    with clock.stage("index"):
        _index_rebuild(records, keys)
    _score_and_decide(
        run, settings, records, left, right, None, outcome, progress, clock, stats, changed=None
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
        for chunk in _chunks(changed_ids, 5000):
            DedupBlockKey.objects.filter(profile_id__in=chunk).delete()
        queryset = _profiles_with_traits().filter(updated_at__gt=last.started_at)
        changed_rows = _load(queryset, progress, len(changed_ids))
        changed_records = build_records(changed_rows, settings.specs)
        changed_keys = block_keys(changed_records)
        neighbour_ids: set[uuid.UUID] = set()
        for chunk in _chunks(np.unique(changed_keys.keys).tolist(), 5000):
            neighbour_ids.update(
                DedupBlockKey.objects.filter(key__in=chunk).values_list("profile_id", flat=True)
            )
        neighbour_ids -= set(changed_records.ids)
        neighbour_rows: list[tuple[uuid.UUID, Any]] = []
        for chunk in _chunks(sorted(neighbour_ids), 5000):
            neighbour_rows += list(_traits_rows(_profiles_with_traits().filter(id__in=chunk)))
        records = build_records(changed_rows + neighbour_rows, settings.specs)
        changed = np.zeros(len(records), dtype=bool)
        changed[: len(changed_rows)] = True
    outcome.scanned = len(changed_rows)
    outcome.loaded = len(records)
    with clock.stage("block"):
        keys = block_keys(records)
        left, right, stats = candidate_pairs(
            keys, len(records), max_block_size=settings.max_block_size, changed=changed
        )
        outcome.blocking = _blocking_report(stats, len(records))
        progress("block", 1, 1)
    with clock.stage("index"):
        _index_insert(records, keys, changed)
    _score_and_decide(
        run,
        settings,
        records,
        left,
        right,
        model,
        outcome,
        progress,
        clock,
        stats,
        changed=changed,
    )


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


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


# --- the blocking index -------------------------------------------------------------


def _index_rebuild(records: Records, keys: BlockKeys) -> None:
    table = DedupBlockKey._meta.db_table
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"TRUNCATE {connection.ops.quote_name(table)}")
        else:
            DedupBlockKey.objects.all().delete()
        _index_write(records, keys, np.ones(len(records), dtype=bool))


def _index_insert(records: Records, keys: BlockKeys, rows: np.ndarray) -> None:
    with transaction.atomic():
        _index_write(records, keys, rows)


def _index_write(records: Records, keys: BlockKeys, rows: np.ndarray) -> None:
    wanted = rows[keys.rows]
    # (key, row), sorted by key: the primary key index then fills in order.
    pairs = np.unique(np.stack([keys.keys[wanted], keys.rows[wanted]], axis=1), axis=0)
    ids = records.ids
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(DedupBlockKey._meta.db_table)
        text_ids = [str(pid) for pid in ids]
        with connection.cursor() as cursor:
            raw = cursor.cursor  # psycopg 3: COPY, in text, is far faster than INSERTs
            with raw.copy(f"COPY {table} (profile_id, key) FROM STDIN") as copy:
                for start in range(0, len(pairs), 100_000):
                    chunk = pairs[start : start + 100_000].tolist()
                    copy.write("".join(f"{text_ids[row]}\t{key}\n" for key, row in chunk))
        return
    DedupBlockKey.objects.bulk_create(
        (DedupBlockKey(profile_id=ids[row], key=key) for key, row in pairs.tolist()),
        batch_size=2000,
    )


# --- scoring and decisions ----------------------------------------------------------


def _pair_key(a: uuid.UUID, b: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    return (a, b) if a < b else (b, a)


def _live_map(ids: set[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """Each id -> the live profile it was (eventually) merged into."""
    parent: dict[uuid.UUID, uuid.UUID | None] = {}
    todo = set(ids)
    while todo:
        found: dict[uuid.UUID, uuid.UUID | None] = {}
        for chunk in _chunks(sorted(todo), 5000):
            found.update(Profile.objects.filter(id__in=chunk).values_list("id", "merged_into_id"))
        parent.update(found)
        todo = {p for p in found.values() if p is not None and p not in parent}
    result = {}
    for pid in ids:
        current, seen = pid, set()
        while parent.get(current) is not None and current not in seen:
            seen.add(current)
            current = parent[current]  # type: ignore[assignment]
        result[pid] = current
    return result


def _decided_pairs() -> set[tuple[uuid.UUID, uuid.UUID]]:
    """Pairs never to be proposed again, as live profile ids: rejected ones (also
    after either side was merged into another profile), refused ones, and merged
    ones that were split apart again."""
    rows = list(
        DuplicateCandidate.objects.exclude(status=DuplicateCandidate.Status.PENDING).values_list(
            "profile_a_id", "profile_b_id"
        )
    )
    live = _live_map({p for row in rows for p in row})
    decided = set()
    for a, b in rows:
        la, lb = live[a], live[b]
        if la != lb:
            decided.add(_pair_key(la, lb))
    return decided


def _drop_decided(records: Records, left: IndexArray, right: IndexArray) -> np.ndarray:
    decided = _decided_pairs()
    keep = np.ones(len(left), dtype=bool)
    if not decided:
        return keep
    index = {pid: i for i, pid in enumerate(records.ids)}
    n = len(records)
    codes = []
    for a, b in decided:
        i, j = index.get(a), index.get(b)
        if i is not None and j is not None:
            codes.append(min(i, j) * n + max(i, j))
    if codes:
        keep &= ~np.isin(left * n + right, np.array(codes, dtype=np.int64))
    return keep


def _compare_all(
    records: Records, left: IndexArray, right: IndexArray, progress: Progress
) -> tuple[np.ndarray, np.ndarray]:
    n = len(left)
    level = np.empty((n, len(records.specs)), dtype=np.int8)
    swapped = np.zeros(n, dtype=bool)
    for start in range(0, n, COMPARE_CHUNK):
        stop = min(start + COMPARE_CHUNK, n)
        result = compare_pairs(records, left[start:stop], right[start:stop])
        level[start:stop] = result.level
        swapped[start:stop] = result.swapped
        progress("compare", stop, n)
    if n == 0:
        progress("compare", 0, 0)
    return level, swapped


def _score_and_decide(
    run: DedupRun,
    settings: DedupSettings,
    records: Records,
    left: IndexArray,
    right: IndexArray,
    model: Model | None,
    outcome: _Outcome,
    progress: Progress,
    clock: _Clock,
    stats: BlockingStats,
    *,
    changed: np.ndarray | None,
) -> None:
    with clock.stage("compare"):
        keep = _drop_decided(records, left, right)
        left, right = left[keep], right[keep]
        outcome.pairs = len(left)
        level, _ = _compare_all(records, left, right, progress)
    with clock.stage("estimate"):
        if model is None:
            model = initial_model(settings.specs)
            if settings.estimate_weights and len(level) >= EM_MIN_PAIRS:
                codes = left * len(records) + right
                model = _estimate(records, level, codes, stats, model)
        outcome.model = model.as_dict()
        scores = model.score(level)
        progress("estimate", 1, 1)
    with clock.stage("decide"):
        selected = np.flatnonzero(scores >= settings.review_threshold)
        order = selected[np.argsort(-scores[selected], kind="stable")]
        candidates = _candidates_build(
            run, records, left[order], right[order], scores[order], model
        )
        # Two or more vetoes: different people (households, namesakes), nearly
        # always; they would only crowd the review queue.
        candidates = [c for c in candidates if len(c.evidence["vetoes"]) <= QUEUE_MAX_VETOES]
    with clock.stage("merge"):
        auto = [
            c
            for c in candidates
            if c.score >= settings.auto_merge_threshold and not c.evidence.get("vetoes")
        ]
        _auto_merge(run, auto, outcome, progress)
    with clock.stage("save"):
        automatic = {id(c) for c in auto}
        _candidates_write([c for c in candidates if id(c) not in automatic])
        _stale_pending_delete(run, records, changed)
        _dead_pending_delete()
        outcome.queued = DuplicateCandidate.objects.filter(
            run=run, status=DuplicateCandidate.Status.PENDING
        ).count()


# Blocking passes whose pairs EM learns m from, and the fields each one masks.
EM_SESSIONS = {
    "birthday": ("birthday",),
    "email": ("email",),
    "phone": ("phone",),
    "name_pair": ("first_name", "last_name"),
    "address": ("address",),
}


def _estimate(
    records: Records,
    level: np.ndarray,
    codes: IndexArray,
    stats: BlockingStats,
    model: Model,
) -> Model:
    """m by EM on the pairs of a few blocking passes (``estimate_sessions``); u
    from random pairs, nearly all of which are two different people (EM's own u
    describes blocked pairs, which agree on the blocking fields by construction);
    then the share of matches among all candidates."""
    rng = np.random.default_rng(0)
    names = [s.name for s in records.specs]
    sessions = []
    for pass_name, fields in EM_SESSIONS.items():
        pass_codes = stats.pass_codes.get(pass_name)
        if pass_codes is None or len(pass_codes) == 0:
            continue
        at = np.searchsorted(codes, pass_codes)
        at = at[(at < len(codes)) & (codes[np.minimum(at, len(codes) - 1)] == pass_codes)]
        if len(at) > EM_SAMPLE // 4:
            at = rng.choice(at, EM_SAMPLE // 4, replace=False)
        masked = [names.index(f) for f in fields if f in names]
        sessions.append((pass_name, level[at], masked))
    fitted = estimate_sessions(sessions, model)
    n = len(records)
    size = min(U_SAMPLE, n * (n - 1) // 2)
    rl, rr = rng.integers(0, n, size), rng.integers(0, n, size)
    distinct = rl != rr
    random_levels = compare_pairs(records, rl[distinct], rr[distinct]).level
    with_u = estimate_u(random_levels, fitted)
    for i, f in enumerate(with_u.fields):
        if f.source != "em":  # EM could not fit it: default m and u together
            with_u.fields[i] = fitted.fields[i]
    sample = level if len(level) <= EM_SAMPLE else level[rng.choice(len(level), EM_SAMPLE)]
    return estimate_lambda(sample, with_u)


def _evidence(
    records: Records, comparison: Comparison, weights: np.ndarray, k: int, i: int, j: int
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for f, spec in enumerate(records.specs):
        level = int(comparison.level[k, f])
        labels = LEVELS[spec.comparator]
        fields[spec.name] = {
            "values": [records.raw[spec.name][i], records.raw[spec.name][j]],
            "similarity": round(float(comparison.similarity[k, f]), 3),
            "level": level,
            "label": labels[level] if level >= 0 else "missing",
            "weight": round(float(weights[k, f]), 3),
        }
    swapped = bool(comparison.swapped[k])
    if swapped:
        # The values compared were the first name of one and the last of the other.
        first, last = records.raw["first_name"], records.raw["last_name"]
        fields["first_name"]["values"] = [first[i], last[j]]
        fields["last_name"]["values"] = [last[i], first[j]]
    levels = {name: item["level"] for name, item in fields.items()}
    return {"fields": fields, "swapped_names": swapped, "vetoes": vetoes(levels)}


def _candidates_build(
    run: DedupRun,
    records: Records,
    left: IndexArray,
    right: IndexArray,
    scores: np.ndarray,
    model: Model,
) -> list[DuplicateCandidate]:
    """Candidate rows (not saved yet) for the pairs above the review threshold; a
    pair still pending from an earlier run keeps its row."""
    if len(left) == 0:
        return []
    comparison = compare_pairs(records, left, right)
    weights = model.field_weights(comparison.level)
    probability = model.probability(scores)
    existing = {
        (a, b): pk
        for pk, a, b in DuplicateCandidate.objects.filter(
            status=DuplicateCandidate.Status.PENDING
        ).values_list("pk", "profile_a_id", "profile_b_id")
    }
    result: list[DuplicateCandidate] = []
    for k, (i, j) in enumerate(zip(left.tolist(), right.tolist(), strict=True)):
        a, b = records.ids[i], records.ids[j]
        if b < a:
            a, b, i, j = b, a, j, i
        result.append(
            DuplicateCandidate(
                pk=existing.get((a, b)),
                profile_a_id=a,
                profile_b_id=b,
                score=round(float(scores[k]), 3),
                probability=float(probability[k]),
                evidence=_evidence(records, comparison, weights, k, i, j),
                run=run,
            )
        )
    return result


_CANDIDATE_FIELDS = [
    "score",
    "probability",
    "evidence",
    "run",
    "status",
    "note",
    "merge",
    "decided_at",
    "updated_at",
]


def _candidates_write(candidates: list[DuplicateCandidate]) -> None:
    now = timezone.now()
    for c in candidates:
        c.updated_at = now
    new = [c for c in candidates if c.pk is None]
    known = [c for c in candidates if c.pk is not None]  # before bulk_create sets pks
    with transaction.atomic():
        DuplicateCandidate.objects.bulk_create(new, batch_size=1000)
        DuplicateCandidate.objects.bulk_update(known, _CANDIDATE_FIELDS, batch_size=500)


def _stale_pending_delete(run: DedupRun, records: Records, changed: np.ndarray | None) -> None:
    """Pending pairs of scanned profiles that no longer reach the review threshold."""
    pending = DuplicateCandidate.objects.filter(status=DuplicateCandidate.Status.PENDING).exclude(
        run=run
    )
    if changed is None:
        pending.delete()
        return
    scanned = [pid for pid, c in zip(records.ids, changed.tolist(), strict=True) if c]
    for chunk in _chunks(scanned, 2000):
        pending.filter(Q(profile_a_id__in=chunk) | Q(profile_b_id__in=chunk)).delete()


def _dead_pending_delete() -> None:
    """Pending pairs whose profile was merged away: the survivor is compared anew."""
    DuplicateCandidate.objects.filter(status=DuplicateCandidate.Status.PENDING).filter(
        Q(profile_a__merged_into__isnull=False) | Q(profile_b__merged_into__isnull=False)
    ).delete()


def _auto_merge(
    run: DedupRun, candidates: list[DuplicateCandidate], outcome: _Outcome, progress: Progress
) -> None:
    """Merge, best score first, by the rules of the safe merge path, a batch of pairs
    at a time (``profile_merge_bulk``); a batch and its candidate rows share one
    transaction."""
    from apps.identity.services import MergeRequest, identity_rules_load, profile_merge_bulk

    rules = identity_rules_load()
    total = len(candidates)
    progress("merge", 0, total)
    for start in range(0, total, MERGE_BATCH):
        batch = candidates[start : start + MERGE_BATCH]
        now = timezone.now()
        with transaction.atomic():
            results = profile_merge_bulk(
                requests=[
                    MergeRequest(
                        profile_ids=(c.profile_a_id, c.profile_b_id),
                        details={
                            "score": c.score,
                            "probability": c.probability,
                            "evidence": c.evidence,
                            "dedup_run_id": run.pk,
                        },
                    )
                    for c in batch
                ],
                reason=ProfileMerge.Reason.MATCH_SCORE,
                rules=rules,
            )
            for candidate, result in zip(batch, results, strict=True):
                candidate.decided_at = now
                if result.refused:
                    candidate.status = DuplicateCandidate.Status.REFUSED
                    candidate.note = result.refused[:500]
                    outcome.refused += 1
                    continue
                candidate.status = DuplicateCandidate.Status.MERGED
                if result.already_one:
                    candidate.note = "Already one profile through other merged pairs."
                    continue
                candidate.merge = result.merge
                outcome.merged += 1
            _candidates_write(batch)
        progress("merge", min(start + MERGE_BATCH, total), total)


# --- review decisions ---------------------------------------------------------------


@transaction.atomic
def duplicate_candidate_merge(
    *, candidate_id: int, actor: Any, force: bool = False
) -> DuplicateCandidate:
    """An admin merges a queued pair (through the safe merge path). A pair a safety
    rule refuses is recorded as refused, unless ``force`` (the caller checks the
    ``identity.force_merge_profile`` permission)."""
    from apps.identity.services import MergeRefused, profile_merge

    candidate = DuplicateCandidate.objects.select_for_update().get(pk=candidate_id)
    if candidate.status in (DuplicateCandidate.Status.MERGED, DuplicateCandidate.Status.REJECTED):
        return candidate
    candidate.decided_by = actor
    candidate.decided_at = timezone.now()
    try:
        candidate.merge = profile_merge(
            profile_ids=(candidate.profile_a_id, candidate.profile_b_id),
            reason=ProfileMerge.Reason.ADMIN,
            details={
                "score": candidate.score,
                "evidence": candidate.evidence,
                "candidate_id": candidate.pk,
            },
            actor=actor,
            force=force,
        )
        candidate.status = DuplicateCandidate.Status.MERGED
        candidate.note = ""
    except MergeRefused as exc:
        candidate.status = DuplicateCandidate.Status.REFUSED
        candidate.note = str(getattr(exc, "message", exc))[:500]
    candidate.save()
    return candidate


@transaction.atomic
def duplicate_candidate_reject(*, candidate_id: int, actor: Any) -> DuplicateCandidate:
    """ "Not the same person": remembered, so the pair is never proposed again."""
    candidate = DuplicateCandidate.objects.select_for_update().get(pk=candidate_id)
    if candidate.status == DuplicateCandidate.Status.MERGED:
        return candidate
    candidate.status = DuplicateCandidate.Status.REJECTED
    candidate.decided_by = actor
    candidate.decided_at = timezone.now()
    candidate.save(update_fields=["status", "decided_by", "decided_at", "updated_at"])
    return candidate

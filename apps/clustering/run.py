"""One reclustering run: extract, transform, fit every candidate, choose,
guard rails, personas, continuity with the previous run, write.

Only a succeeded run writes: its clusters' memberships are swapped in as one
transaction (apps/segments/written.py), together with its Cluster rows and the
config's current run, so readers see the previous run or this one, never a mix.
A run that fails (bad data, a time limit, an error) or is degenerate (no
candidate passes the guard rails) writes nothing but itself: the previous
memberships stay, and the run says why.

Two runs of one config never overlap: on PostgreSQL a session advisory lock
per config is held for the whole run (a second one finds it taken and stops);
on SQLite, which runs one writer at a time anyway, a running run is checked for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from threadpoolctl import threadpool_limits

from apps.segments.written import (
    UUID_DTYPE,
    StagedIncomplete,
    WrittenMembers,
    written_segment_create,
    written_segment_describe,
    written_segments_swap,
    written_stage_drop,
    written_stage_tokens,
)
from cdp.celery import app as celery_app

from . import fitting
from .chunks import (
    CHUNK_SIZE,
    AssignModel,
    ChunkFailed,
    Reduced,
    ari_from_contingency,
    chunks_abandon,
    chunks_plan,
    chunks_reduce,
    chunks_work,
)
from .extract import features_extract
from .fitting import DataProblem, FitSettings, RunTimeout, Transformer
from .models import SAMPLED_ALGORITHMS, Cluster, ClusteringConfig, ClusteringRun, RunStatus
from .personas import cluster_profile_of_means, persona_description, persona_name

logger = logging.getLogger(__name__)

_LOCK_SPACE = 7_411_005  # advisory-lock namespace of clustering runs
PHASES = ("extract", "fit", "choose", "assign", "write")
Progress = Callable[[str], None]


@contextmanager
def _config_lock(config_id: int) -> Iterator[bool]:
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_SPACE, config_id])
        got = bool(cursor.fetchone()[0])
    try:
        yield got
    finally:
        if got:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_SPACE, config_id])


def _params(config: ClusteringConfig) -> dict[str, Any]:
    fields = [
        "key", "features", "scaling", "pca_components", "population_segment_id", "algorithm",
        "k_min", "k_max", "k_selection", "silhouette_sample_size", "fit_sample_size", "eps",
        "min_samples", "min_cluster_size", "max_cluster_share", "random_state",
        "time_limit_seconds",
    ]  # fmt: skip
    return {name: getattr(config, name) for name in fields}


def recluster(
    *, config_id: int, run_id: int | None = None, progress: Progress | None = None
) -> ClusteringRun | None:
    """Run a config now (or the queued run ``run_id``). Returns the run, or None
    when there is nothing to do (no such config, the run was done already, or
    another run of this config holds it; a queued run then says so)."""
    config = ClusteringConfig.objects.filter(pk=config_id).first()
    if config is None:
        return None
    with _config_lock(config.pk) as got:
        queued = ClusteringRun.objects.filter(pk=run_id, config=config).first() if run_id else None
        if run_id and (queued is None or queued.status != RunStatus.QUEUED):
            return None  # done already (a redelivered task): nothing to repeat
        busy = not got or _running_elsewhere(config, queued)
        if busy:
            if queued is not None:
                _finish(queued, RunStatus.FAILED, "another run of this config was in progress")
            return None
        _stale_staging_drop()
        run = queued or ClusteringRun(config=config)
        run.status = RunStatus.RUNNING
        run.started_at = timezone.now()
        run.params = _params(config)
        run.previous_run = config.current_run
        run.save()
        try:
            with threadpool_limits(limits=settings.CDP["CLUSTERING_THREADS"]):
                _run(config, run, progress or (lambda phase: None))
        except (DataProblem, ChunkFailed, StagedIncomplete) as exc:
            _finish(run, RunStatus.FAILED, str(exc))
        except (RunTimeout, SoftTimeLimitExceeded):
            _finish(run, RunStatus.FAILED, "the run went over its time limit; nothing was written")
        except Exception as exc:
            logger.exception("clustering run %s failed", run.pk)
            _finish(run, RunStatus.FAILED, f"internal error ({type(exc).__name__}); see the logs")
        finally:
            if run.status != RunStatus.SUCCEEDED:
                _abandon(run)
        return run


def _abandon(run: ClusteringRun) -> None:
    """A run that did not succeed: its chunks first (none stages after this),
    then what they staged (a swap drops its own). A failure here (the database
    went away, often what failed the run too) is logged and goes no further, so
    that the run's own error is the one reported: the next run of any config
    fails this run's chunks if it is still "running" and drops rows staged
    under runs no longer running."""
    try:
        chunks_abandon(run.pk, "its run did not succeed")
        written_stage_drop(run.pk)
    except Exception:
        logger.exception(
            "clustering run %s: dropping what it staged failed; the next run drops it", run.pk
        )


def _running_elsewhere(config: ClusteringConfig, mine: ClusteringRun | None) -> bool:
    """On SQLite, where there is no advisory lock: a recent running run."""
    if connection.vendor == "postgresql":
        # The lock is ours: any "running" row is left from a worker that died.
        stale = ClusteringRun.objects.filter(config=config, status=RunStatus.RUNNING)
    else:
        limit = timezone.now() - timedelta(seconds=config.time_limit_seconds + 300)
        if (
            ClusteringRun.objects.filter(
                config=config, status=RunStatus.RUNNING, started_at__gte=limit
            )
            .exclude(pk=mine.pk if mine is not None else 0)
            .exists()
        ):
            return True
        stale = ClusteringRun.objects.filter(
            config=config, status=RunStatus.RUNNING, started_at__lt=limit
        )
    stale = stale.exclude(pk=mine.pk if mine is not None else 0)
    lost = list(stale.values_list("pk", flat=True))
    ClusteringRun.objects.filter(pk__in=lost).update(
        status=RunStatus.FAILED,
        error="interrupted: its worker stopped before it finished",
        finished_at=timezone.now(),
    )
    for pk in lost:
        chunks_abandon(pk, "its run stopped before it finished")
        written_stage_drop(pk)  # what its chunks staged before its worker stopped
    return False


def _stale_staging_drop() -> None:
    """Rows staged under runs no longer running (a chunk of a run that failed
    which staged anyway, a process that stopped between failing and dropping):
    dropped."""
    tokens = written_stage_tokens()
    if not tokens:
        return
    running = set(
        ClusteringRun.objects.filter(pk__in=tokens, status=RunStatus.RUNNING).values_list(
            "pk", flat=True
        )
    )
    for token in tokens:
        if token not in running:
            written_stage_drop(token)


def _finish(run: ClusteringRun, status: str, error: str = "") -> None:
    run.status = status
    run.error = error
    run.finished_at = timezone.now()
    run.save()


def _settings(config: ClusteringConfig, deadline: float) -> FitSettings:
    return FitSettings(
        algorithm=config.algorithm,
        k_min=config.k_min,
        k_max=config.k_max,
        k_selection=config.k_selection,
        silhouette_sample_size=config.silhouette_sample_size,
        fit_sample_size=config.fit_sample_size,
        eps=config.eps,
        min_samples=config.min_samples,
        min_cluster_size=config.min_cluster_size,
        max_cluster_share=config.max_cluster_share,
        random_state=config.random_state,
        deadline=deadline,
    )


def _run(config: ClusteringConfig, run: ClusteringRun, progress: Progress) -> None:
    deadline = time.monotonic() + config.time_limit_seconds
    timings: dict[str, float] = {}
    previous = config.current_run
    previous_clusters = list(previous.clusters.all()) if previous is not None else []
    previous_segments = [c.segment_id for c in previous_clusters if c.segment_id is not None]
    names = [f["name"] for f in config.features]
    logged = [f.get("transform") == "log1p" for f in config.features]

    # extract
    progress("extract")
    clock = time.monotonic()
    extracted_at = timezone.now()
    data = features_extract(
        names,
        now=extracted_at,
        population_segment_id=config.population_segment_id,
        previous_segments=previous_segments,
    )
    run.population_size = len(data)
    timings["extract"] = time.monotonic() - clock

    # transform and fit
    progress("fit")
    clock = time.monotonic()
    notes: list[str] = []
    run.notes = notes
    transformer, _scaled, x = fitting.transformer_fit(
        data.matrix,
        names,
        logged,
        scaling=config.scaling,
        pca_components=config.pca_components,
        random_state=config.random_state,
        notes=notes,
    )
    run.features_used = transformer.features
    timings["transform"] = time.monotonic() - clock
    fit = fitting.fit_candidates(x, _settings(config, deadline))
    notes.extend(fit.notes)
    timings.update(fit.timings)
    progress("choose")
    run.candidates = [c.summary() for c in fit.candidates]
    run.fitted_on_sample = fit.sample_index is not None
    run.sample_size = len(fit.sample_index) if fit.sample_index is not None else len(x)
    if fit.candidates and fit.candidates[0].noise_share is not None:
        run.clusters_found = fit.candidates[0].k
        run.noise_share = fit.candidates[0].noise_share
    if fit.chosen is None:
        run.timings = _rounded(timings)
        reasons = "; ".join(f"k={c.k}: {c.why_invalid}" for c in fit.candidates if not c.valid)
        _finish(
            run,
            RunStatus.DEGENERATE,
            "no clustering passed the guard rails, the previous memberships stay ("
            + (reasons or "no candidate could be scored")
            + ")",
        )
        return
    chosen = fit.chosen
    run.chosen_k = chosen.k

    # assign: the chunked map (apps/clustering/chunks.py), then its reduce
    progress("assign")
    clock = time.monotonic()
    k = chosen.k
    run.model = {
        "transformer": transformer.to_json(),
        "centroids": np.round(chosen.centroids, 8).tolist(),
        "segments": [],
        "algorithm": config.algorithm,
        "extracted_at": extracted_at.isoformat(),
        "previous_segments": previous_segments,
    }
    run.save()
    reduced = _assign_chunked(run, fit, data, x, deadline)
    sizes = reduced.sizes
    final = fitting.Candidate(k, np.empty(0, dtype=np.int64), chosen.centroids, {}, sizes.tolist())
    fitting._judge(final, reduced.n, reduced.n, _settings(config, deadline))
    if not final.valid:
        run.timings = _rounded(timings)
        _finish(
            run,
            RunStatus.DEGENERATE,
            f"with every profile assigned, {final.why_invalid}; the previous memberships stay",
        )
        return
    run.stability_ari, run.stability_shared = ari_from_contingency(reduced.contingency)
    profiles = [
        cluster_profile_of_means(
            transformer.features,
            cluster_raw=reduced.raw_means[i],
            population_raw=reduced.population_raw,
            cluster_scaled=reduced.scaled_means[i],
            population_scaled=reduced.population_scaled,
            population_scaled_sd=reduced.population_scaled_sd,
            has_members=bool(sizes[i] > 0),
        )
        for i in range(k)
    ]
    matches = _continuity(
        transformer, names, reduced.previous_means, chosen.centroids, previous_clusters
    )
    timings["assign"] = time.monotonic() - clock

    # write
    progress("write")
    clock = time.monotonic()
    with transaction.atomic():
        clusters = _clusters_build(config, run, profiles, sizes, reduced.raw_means, matches)
        sampled = config.algorithm in SAMPLED_ALGORITHMS and run.fitted_on_sample
        how = (
            f"{config.get_algorithm_display()} on a sample of {run.sample_size:,}, "
            "the rest by nearest centroid"
            if sampled
            else "nearest centroid"
        )
        empty_ids = np.empty(0, dtype=UUID_DTYPE)
        members = [
            WrittenMembers(
                segment_id=int(c.segment_id),
                profile_ids=empty_ids,
                distances=np.empty(0),
                reason={
                    "source": "cluster",
                    "text": f"cluster {c.index} of run {run.pk}: {how}",
                    "run": run.pk,
                    "cluster": c.index,
                },
                gone_text=f"not in this cluster at run {run.pk}",
                slot=c.index,
            )
            for c in clusters
            if c.segment_id is not None
        ]
        kept = {c.segment_id for c in clusters}
        emptied = [sid for sid in previous_segments if sid not in kept]
        swapped = written_segments_swap(
            members=members,
            emptied=emptied,
            emptied_text=f"the cluster is gone at run {run.pk}",
            staged=run.pk,
            expected=reduced.staged,
        )
        run.model["segments"] = [c.segment_id for c in clusters]
        # Profiles erased or merged between their chunk and the swap: left out.
        run.model["skipped_at_swap"] = swapped.skipped
        if swapped.skipped:
            logger.info(
                "clustering run %s: %s staged profiles were erased or merged since; left out",
                run.pk,
                swapped.skipped,
            )
        run.scatter = fitting.scatter(
            x, lambda index: _labels_at(x, fit, index), chosen.centroids, config.random_state
        )
        timings["write"] = time.monotonic() - clock
        run.timings = _rounded(timings)
        _finish(run, RunStatus.SUCCEEDED)
        ClusteringConfig.objects.filter(pk=config.pk).update(current_run=run)
        config.current_run = run
        # Profiles whose features changed while the run computed: placed by the
        # new model now (the swap replaced whatever the stage did meanwhile).
        from .assign import profiles_assign

        changed = _changed_since(extracted_at)
        if changed:
            profiles_assign(changed, configs=[config])
    # The write's time includes its commit, where PostgreSQL checks the deferred
    # foreign keys of every inserted membership and outbox row.
    timings["write"] = time.monotonic() - clock
    run.timings = _rounded(timings)
    ClusteringRun.objects.filter(pk=run.pk).update(timings=run.timings)


def _changed_since(at: Any) -> list[Any]:
    from apps.segments.models import ProfileFeatures

    return list(
        ProfileFeatures.objects.filter(updated_at__gte=at).values_list("profile_id", flat=True)[
            :50_000
        ]
    )


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {name: round(seconds, 4) for name, seconds in timings.items()}


def _continuity(
    transformer: Transformer,
    names: list[str],
    previous_means: dict[int, np.ndarray],
    centroids: np.ndarray,
    previous_clusters: list[Cluster],
) -> dict[int, tuple[Cluster, float]]:
    """New cluster index -> the previous cluster it continues (and the distance).
    A previous cluster sits where its members are now, in this run's space (the
    mean the chunks summed); one with no member left, at its stored centroid
    transformed by this run."""
    usable = [c for c in previous_clusters if c.segment_id is not None]
    if not usable:
        return {}
    old = np.zeros((len(usable), centroids.shape[1]))
    for i, cluster in enumerate(usable):
        mean = previous_means.get(int(cluster.segment_id or 0))
        if mean is not None:
            old[i] = mean
        else:
            row = np.array([[cluster.centroid.get(name, np.nan) for name in names]], dtype=float)
            old[i] = transformer.apply(row)[0]
    return {new: (usable[o], d) for new, o, d in fitting.match(centroids, old)}


def _assign_chunked(
    run: ClusteringRun, fit: fitting.Fit, data: Any, x: np.ndarray, deadline: float
) -> Reduced:
    """Split the population into chunks, have them assigned (by workers and by
    this process), and combine their partial sums."""
    chosen = fit.chosen
    assert chosen is not None
    kept: dict[bytes, int] = {}
    if fit.sample_index is not None or chosen.noise_share is not None:
        index = fit.sample_index if fit.sample_index is not None else np.arange(len(x))
        ids = np.ascontiguousarray(data.profile_ids).view(UUID_DTYPE).reshape(-1)
        kept = {
            ids[i].tobytes(): int(label)
            for i, label in zip(index.tolist(), chosen.labels.tolist(), strict=True)
        }
    cdp = settings.CDP
    planned = chunks_plan(
        run, data.profile_ids, int(cdp.get("CLUSTERING_CHUNK_SIZE", CHUNK_SIZE)), kept
    )
    eager = bool(celery_app.conf.task_always_eager)
    done = chunks_work(
        run,
        planned,
        AssignModel.of_run(run),
        data,
        dispatch=not eager,
        local=eager or bool(cdp.get("CLUSTERING_ASSIGN_LOCAL", True)),
        deadline=deadline,
    )
    width = len(run.features_used)
    reduced = chunks_reduce([c.partial for c in done], chosen.k, width, x.shape[1])
    reduced.staged = sum(int(c.staged_rows or 0) for c in done)
    if reduced.staged != int(reduced.sizes.sum()):
        raise ChunkFailed(
            f"the chunks staged {reduced.staged:,} memberships for "
            f"{int(reduced.sizes.sum()):,} profiles placed"
        )
    return reduced


def _labels_at(x: np.ndarray, fit: fitting.Fit, index: np.ndarray) -> np.ndarray:
    """The clusters of these rows, as the chunks assign them (for the scatter)."""
    chosen = fit.chosen
    assert chosen is not None
    labels, _ = fitting.nearest(x[index], chosen.centroids)
    if fit.sample_index is not None or chosen.noise_share is not None:
        sample = fit.sample_index if fit.sample_index is not None else np.arange(len(x))
        own = dict(zip(sample.tolist(), chosen.labels.tolist(), strict=True))
        for j, i in enumerate(index.tolist()):
            if i in own:
                labels[j] = own[i]
    return labels


def _clusters_build(
    config: ClusteringConfig,
    run: ClusteringRun,
    profiles: list[Any],
    sizes: np.ndarray,
    raw_means: np.ndarray,
    matches: dict[int, tuple[Cluster, float]],
) -> list[Cluster]:
    total = max(int(sizes.sum()), 1)
    taken = [prev.persona_name for prev, _ in matches.values()]
    clusters = []
    for i, profiled in enumerate(profiles):
        size = int(sizes[i])
        share = size / total
        matched = matches.get(i)
        description = persona_description(profiled, size, share)
        if matched is not None:
            prev, distance = matched
            name, renamed, segment_id = prev.persona_name, prev.renamed, prev.segment_id
            if renamed and prev.persona_description:
                description = prev.persona_description
        else:
            name = persona_name(profiled, taken)
            renamed, distance, prev = False, None, None
            segment_id = _segment_new(config, name, description).pk
        taken.append(name)
        centroid = (
            {f: round(float(v), 4) for f, v in zip(run.features_used, raw_means[i], strict=True)}
            if size > 0
            else {}
        )
        cluster = Cluster(
            run=run,
            index=i,
            segment_id=segment_id,
            size=size,
            share=round(share, 6),
            centroid=centroid,
            feature_means=profiled.feature_means,
            distinctive=profiled.distinctive,
            persona_name=name,
            persona_description=description,
            renamed=renamed,
            previous=prev,
            previous_distance=round(distance, 6) if distance is not None else None,
        )
        cluster.save()
        if matched is not None and segment_id is not None:
            written_segment_describe(segment_id, name=name, description=description)
        clusters.append(cluster)
    return clusters


def _segment_new(config: ClusteringConfig, name: str, description: str) -> Any:
    from apps.segments.models import Segment

    serial = ClusteringConfig.objects.select_for_update().get(pk=config.pk).segment_serial
    while True:
        serial += 1
        key = f"cluster-{config.key}-{serial}"
        if not Segment.objects.filter(key=key).exists():
            break
    ClusteringConfig.objects.filter(pk=config.pk).update(segment_serial=serial)
    return written_segment_create(key=key, name=name, description=description)


__all__ = ["PHASES", "recluster"]

"""The assignment as a chunked map: a run split over many chunks (in process, or
taken by a real Celery worker consuming from the broker) writes what a run in one
chunk writes; a chunk done twice stages its rows once; a failed chunk fails the
run and keeps the previous memberships."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from celery.contrib.testing.worker import start_worker
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import OperationalError
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score

from apps.clustering import chunks as chunks_module
from apps.clustering import run as run_module
from apps.clustering.chunks import AssignModel, ari_from_contingency, chunk_claim, chunk_run
from apps.clustering.models import ChunkStatus, ClusteringRun, RunChunk, RunStatus
from apps.clustering.run import recluster
from apps.segments.models import Membership, ProfileFeatures, WrittenStaging
from cdp.celery import app as celery_app

from .archetypes import archetype_population


@given(
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 5)), min_size=0, max_size=60),
)
@hsettings(max_examples=200, deadline=None)
def test_the_ari_of_a_contingency_table_is_scikit_learns(pairs: list[tuple[int, int]]) -> None:
    # given two labellings of the same profiles, and their contingency table
    a = np.array([p[0] for p in pairs], dtype=int)
    b = np.array([p[1] for p in pairs], dtype=int)
    table = np.zeros((5, 6), dtype=np.int64)
    np.add.at(table, (a, b), 1)

    # when the index is computed from the table alone
    ari, shared = ari_from_contingency(table)

    # then it is scikit-learn's from the labels (None under two profiles)
    assert shared == len(pairs)
    if len(pairs) < 2:
        assert ari is None
    else:
        assert ari == pytest.approx(adjusted_rand_score(a, b), abs=1e-9)


def _with_chunks(monkeypatch: Any, size: int, *, local: bool = True) -> None:
    monkeypatch.setitem(settings.CDP, "CLUSTERING_CHUNK_SIZE", size)
    monkeypatch.setitem(settings.CDP, "CLUSTERING_ASSIGN_LOCAL", local)


def _outcome(run: ClusteringRun) -> dict[str, Any]:
    """What a run wrote, by cluster index: its members, sizes, centroids, ARI."""
    clusters = list(run.clusters.order_by("index"))
    members = {
        c.index: set(
            Membership.objects.filter(segment_id=c.segment_id, exited_at__isnull=True).values_list(
                "profile_id", flat=True
            )
        )
        for c in clusters
    }
    distances = {
        (c.index, pid): d
        for c in clusters
        for pid, d in Membership.objects.filter(
            segment_id=c.segment_id, exited_at__isnull=True
        ).values_list("profile_id", "reason__distance")
    }
    return {
        "k": run.chosen_k,
        "members": members,
        "distances": distances,
        "sizes": [c.size for c in clusters],
        "centroids": [c.centroid for c in clusters],
        "names": [c.persona_name for c in clusters],
        "ari": run.stability_ari,
        "shared": run.stability_shared,
    }


def _assert_same(one: dict[str, Any], many: dict[str, Any]) -> None:
    assert many["k"] == one["k"]
    assert many["members"] == one["members"]
    assert many["sizes"] == one["sizes"]
    assert many["names"] == one["names"]
    assert many["shared"] == one["shared"]
    assert many["ari"] == pytest.approx(one["ari"], abs=1e-9)
    for a, b in zip(many["centroids"], one["centroids"], strict=True):
        assert a == pytest.approx(b, abs=1e-3)
    assert many["distances"].keys() == one["distances"].keys()
    for key, d in one["distances"].items():
        assert many["distances"][key] == pytest.approx(d, abs=1e-3)


def _two_runs(make_config: Any, monkeypatch: Any, key: str, size: int, population: Any) -> Any:
    """A first run, a change of data, and a second run, of a config of its own,
    the second run's assignment in chunks of ``size``."""
    config = make_config(key=key, k_max=6, min_cluster_size=5)
    _with_chunks(monkeypatch, 10_000)
    first = recluster(config_id=config.pk)
    assert first is not None and first.status == RunStatus.SUCCEEDED
    _with_chunks(monkeypatch, size)
    second = recluster(config_id=config.pk)
    assert second is not None and second.status == RunStatus.SUCCEEDED, second.error
    return second


def _change(population: Any) -> None:
    for row in ProfileFeatures.objects.filter(profile_id__in=population.profile_ids[:40]):
        row.orders_count = row.orders_count * 3 + 1
        row.save()


@pytest.mark.django_db
@pytest.mark.parametrize("size", [1, 37, 100])
def test_a_run_in_chunks_writes_what_a_run_in_one_chunk_writes(make_config, monkeypatch, size):
    # given a population clustered once by two configs alike, then changed data
    population = archetype_population(60)
    config_one = make_config(key="one", k_max=6, min_cluster_size=5)
    config_many = make_config(key="many", k_max=6, min_cluster_size=5)
    _with_chunks(monkeypatch, 10_000)
    for config in (config_one, config_many):
        run = recluster(config_id=config.pk)
        assert run is not None and run.status == RunStatus.SUCCEEDED
    _change(population)

    # when one config runs again in one chunk, and the other in many
    _with_chunks(monkeypatch, 10_000)
    one = recluster(config_id=config_one.pk)
    _with_chunks(monkeypatch, size)
    many = recluster(config_id=config_many.pk)

    # then both wrote the same memberships, sizes, centroids and stability
    assert one is not None and one.status == RunStatus.SUCCEEDED, one.error
    assert many is not None and many.status == RunStatus.SUCCEEDED, many.error
    assert one.chunks.count() == 1
    assert many.chunks.count() == -(-300 // size)
    assert set(many.chunks.values_list("status", flat=True)) == {ChunkStatus.DONE}
    assert one.stability_ari is not None and one.stability_shared == 300
    _assert_same(_outcome(one), _outcome(many))
    # and nothing stays staged
    assert not WrittenStaging.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("size", [40, 110])
def test_a_worker_assigns_the_chunks_of_a_run(not_eager: None, make_config, monkeypatch, size):
    # given a population clustered once by two configs alike, then changed data
    population = archetype_population(60)
    config_one = make_config(key="one", k_max=6, min_cluster_size=5)
    config_many = make_config(key="many", k_max=6, min_cluster_size=5)
    _with_chunks(monkeypatch, 10_000)
    for config in (config_one, config_many):
        run = recluster(config_id=config.pk)
        assert run is not None and run.status == RunStatus.SUCCEEDED
    _change(population)
    _with_chunks(monkeypatch, 10_000)
    one = recluster(config_id=config_one.pk)
    assert one is not None and one.status == RunStatus.SUCCEEDED, one.error

    # when the other runs with its chunks left to a Celery worker consuming
    # from the broker (the run's own process assigns none), on both queues as
    # a plain worker does (a worker's queue selection stays on the app)
    _with_chunks(monkeypatch, size, local=False)
    with start_worker(
        celery_app,
        perform_ping_check=False,
        pool="solo",
        concurrency=1,
        loglevel="WARNING",
        queues=["celery", "clustering"],
    ):
        many = recluster(config_id=config_many.pk)

    # then the worker did every chunk, and the run wrote what one chunk writes
    assert many is not None and many.status == RunStatus.SUCCEEDED, many.error
    assert many.chunks.count() == -(-300 // size) > 1
    assert set(many.chunks.values_list("status", flat=True)) == {ChunkStatus.DONE}
    _assert_same(_outcome(one), _outcome(many))
    assert not WrittenStaging.objects.exists()


def test_chunk_tasks_have_a_queue_of_their_own_that_a_plain_worker_consumes() -> None:
    from apps.clustering.tasks import assign_chunk
    from apps.events.tasks import events_process_pending

    router = celery_app.amqp.router
    assert router.route({}, assign_chunk.name)["queue"].name == "clustering"
    assert router.route({}, events_process_pending.name)["queue"].name == "celery"
    # a worker started without -Q consumes every declared queue
    assert set(celery_app.amqp.queues) == {"celery", "clustering"}


@pytest.mark.django_db
def test_a_chunk_done_twice_stages_its_rows_once(make_config, monkeypatch):
    # given a run whose swap is held back, and its chunks done
    archetype_population(40)
    config = make_config(k_max=6, min_cluster_size=5)
    from apps.clustering import run as run_module

    def no_swap(**kwargs: Any) -> None:
        raise RuntimeError("held back")

    monkeypatch.setattr(run_module, "written_segments_swap", no_swap)
    monkeypatch.setattr(run_module, "written_stage_drop", lambda token: None)
    _with_chunks(monkeypatch, 70)
    run = recluster(config_id=config.pk)
    assert run is not None and run.status == RunStatus.FAILED
    staged = WrittenStaging.objects.filter(token=run.pk)
    rows = sorted(staged.values_list("chunk", "slot", "profile_id", "distance"))
    assert len(rows) == 200

    # when a chunk is delivered again: once as a task (done: skipped), then
    # done again by hand
    from apps.clustering.tasks import assign_chunk

    assert assign_chunk.apply(args=[run.pk, 1]).get() == "skipped"
    chunk = RunChunk.objects.get(run=run, index=1)
    chunk.status = ChunkStatus.QUEUED
    chunk.save()
    ClusteringRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    claimed = chunk_claim(run.pk, index=1)
    assert claimed is not None and chunk_claim(run.pk, index=1) is None
    chunk_run(claimed, AssignModel.of_run(run))

    # then its rows are staged once, as before
    assert sorted(staged.values_list("chunk", "slot", "profile_id", "distance")) == rows
    claimed.refresh_from_db()
    assert claimed.status == ChunkStatus.DONE


@pytest.mark.django_db
def test_a_failed_chunk_fails_the_run_and_keeps_the_memberships(make_config, monkeypatch):
    # given a good run
    archetype_population(40)
    config = make_config(k_max=6, min_cluster_size=5)
    good = recluster(config_id=config.pk)
    assert good is not None and good.status == RunStatus.SUCCEEDED
    before = set(
        Membership.objects.filter(exited_at__isnull=True).values_list("segment_id", "profile_id")
    )

    # when a run's third chunk breaks
    original = chunks_module.chunk_assign

    def breaking(model: Any, data: Any, kept: Any) -> Any:
        if len(data) and data.profile_ids[0].tobytes() == third:
            raise OSError("node lost its disk")
        return original(model, data, kept)

    ids = sorted(p.bytes for p in ProfileFeatures.objects.values_list("profile_id", flat=True))
    third = ids[100]
    monkeypatch.setattr(chunks_module, "chunk_assign", breaking)
    _with_chunks(monkeypatch, 50)
    run = recluster(config_id=config.pk)

    # then the run failed, saying which chunk, and the previous memberships stay
    assert run is not None and run.status == RunStatus.FAILED
    assert run.error.startswith("chunk 2 failed: OSError: node lost its disk")
    assert not run.clusters.exists()
    config.refresh_from_db()
    assert config.current_run_id == good.pk
    after = set(
        Membership.objects.filter(exited_at__isnull=True).values_list("segment_id", "profile_id")
    )
    assert after == before
    assert not WrittenStaging.objects.exists()


def _claimed_long_ago(monkeypatch: Any, seconds: float) -> None:
    """The run's chunks are all claimed ``seconds`` ago by a worker (which did
    none of them), and the run queues no task for them."""
    original = chunks_module.chunks_work

    def stopped_worker(run: Any, planned: Any, *args: Any, **kwargs: Any) -> Any:
        from datetime import UTC, datetime

        RunChunk.objects.filter(run=run).update(
            status=ChunkStatus.RUNNING,
            claimed_at=datetime.fromtimestamp(time.time() - seconds, UTC),
            done_by="gone:1",
        )
        return original(run, planned, *args, **{**kwargs, "dispatch": False})

    from apps.clustering import run as run_module

    monkeypatch.setattr(run_module, "chunks_work", stopped_worker)


@pytest.mark.django_db
def test_a_chunk_whose_worker_stopped_fails_the_run(not_eager: None, make_config, monkeypatch):
    # given a run whose chunks no one takes but a worker that stopped long ago
    archetype_population(40)
    config = make_config(k_max=6, min_cluster_size=5)
    _with_chunks(monkeypatch, 100, local=False)
    _claimed_long_ago(monkeypatch, chunks_module.CHUNK_LOST_AFTER + 60)
    run = recluster(config_id=config.pk)

    # then the run fails and says so, writing nothing
    assert run is not None and run.status == RunStatus.FAILED
    assert run.error == "chunk 0: its worker stopped before it finished"
    assert not Membership.objects.exists()
    assert set(run.chunks.values_list("status", flat=True)) == {ChunkStatus.FAILED}


@pytest.mark.django_db
def test_a_chunk_whose_worker_died_is_taken_back(make_config, monkeypatch):
    # given a run whose chunks were claimed by a worker that died (past the
    # chunk task's hard time limit, with no result)
    archetype_population(40)
    config = make_config(k_max=6, min_cluster_size=5)
    _with_chunks(monkeypatch, 100)
    _claimed_long_ago(monkeypatch, chunks_module.CHUNK_HARD_LIMIT + 5)

    # when the run works through its chunks
    run = recluster(config_id=config.pk)

    # then it took them back and did them: the run succeeds
    assert run is not None and run.status == RunStatus.SUCCEEDED, run.error
    chunks = list(run.chunks.all())
    assert {c.status for c in chunks} == {ChunkStatus.DONE}
    assert all(c.done_by != "gone:1" for c in chunks)
    assert Membership.objects.filter(exited_at__isnull=True).count() == 200


@pytest.mark.django_db
def test_a_redelivered_task_takes_back_a_chunk_only_past_the_hard_limit(make_config, monkeypatch):
    # given a run held at its swap, one chunk claimed by a worker still in time
    # and one by a worker past the hard limit
    archetype_population(40)
    config = make_config(k_max=6, min_cluster_size=5)
    _with_chunks(monkeypatch, 70)
    run = _held_at_swap(config, monkeypatch)
    from datetime import timedelta

    from django.utils import timezone

    from apps.clustering.tasks import assign_chunk

    now = timezone.now()
    RunChunk.objects.filter(run=run, index=0).update(
        status=ChunkStatus.RUNNING, claimed_at=now - timedelta(seconds=30)
    )
    RunChunk.objects.filter(run=run, index=1).update(
        status=ChunkStatus.RUNNING,
        claimed_at=now - timedelta(seconds=chunks_module.CHUNK_HARD_LIMIT + 5),
    )

    # when both tasks are delivered again
    # then the one in time is left to its worker, the other is done again
    assert assign_chunk.apply(args=[run.pk, 0]).get() == "skipped"
    assert assign_chunk.apply(args=[run.pk, 1]).get() == ChunkStatus.DONE
    again = RunChunk.objects.get(run=run, index=1)
    assert again.claimed_at > now - timedelta(seconds=5)


def _held_at_swap(config: Any, monkeypatch: Any) -> ClusteringRun:
    """A run of ``config`` whose chunks are done, stopped just before its swap,
    and left running (as if its process were still at it)."""
    from apps.clustering import run as run_module

    def no_swap(**kwargs: Any) -> None:
        raise RuntimeError("held back")

    with monkeypatch.context() as m:
        m.setattr(run_module, "written_segments_swap", no_swap)
        m.setattr(run_module, "written_stage_drop", lambda token: None)
        run = recluster(config_id=config.pk)
    assert run is not None and run.status == RunStatus.FAILED
    ClusteringRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    run.refresh_from_db()
    return run


@pytest.mark.django_db
def test_the_chunks_of_a_failed_run_stage_nothing(make_config, monkeypatch):
    # given a run whose third chunk breaks, while a worker holds its last chunk
    archetype_population(40)
    config = make_config(k_max=6, min_cluster_size=5)
    _with_chunks(monkeypatch, 50)
    original = chunks_module.chunk_assign
    held: list[RunChunk] = []

    def breaking(model: Any, data: Any, kept: Any) -> Any:
        if not held:
            claimed = chunk_claim(RunChunk.objects.latest("pk").run_id, last_first=True)
            assert claimed is not None
            held.append(claimed)
            raise OSError("node lost its disk")
        return original(model, data, kept)

    monkeypatch.setattr(chunks_module, "chunk_assign", breaking)
    run = recluster(config_id=config.pk)
    assert run is not None and run.status == RunStatus.FAILED
    monkeypatch.setattr(chunks_module, "chunk_assign", original)

    # when the worker holding a chunk finishes it, and a queued chunk's task
    # is delivered afterwards
    from apps.clustering.tasks import assign_chunk

    chunk_run(held[0], AssignModel.of_run(run))
    assert assign_chunk.apply(args=[run.pk, 2]).get() == "skipped"

    # then neither staged anything, and every chunk of the run is failed
    assert not WrittenStaging.objects.exists()
    assert set(run.chunks.values_list("status", flat=True)) == {ChunkStatus.FAILED}
    assert chunk_claim(run.pk) is None


@pytest.mark.django_db
def test_rows_staged_under_a_failed_run_are_dropped_by_the_next_run(make_config):
    # given rows staged under a run that failed (a straggler of an older
    # version, a process stopped between failing and dropping)
    archetype_population(40)
    other = make_config(key="other", k_max=6, min_cluster_size=5)
    config = make_config(k_max=6, min_cluster_size=5)
    failed = ClusteringRun.objects.create(config=other, status=RunStatus.FAILED)
    pid = ProfileFeatures.objects.values_list("profile_id", flat=True).first()
    WrittenStaging.objects.create(token=failed.pk, chunk=0, slot=0, profile_id=pid, distance=1)

    # when a run of another config runs
    run = recluster(config_id=config.pk)

    # then they are gone
    assert run is not None and run.status == RunStatus.SUCCEEDED, run.error
    assert not WrittenStaging.objects.exists()


def _before_swap(monkeypatch: Any, meddle: Any) -> None:
    """``meddle(run_id)`` runs in the write's transaction just before the swap."""
    from apps.clustering import run as run_module

    original = run_module.written_segments_swap

    def swap(**kwargs: Any) -> Any:
        meddle(kwargs["staged"])
        return original(**kwargs)

    monkeypatch.setattr(run_module, "written_segments_swap", swap)


@pytest.mark.django_db
def test_a_swap_missing_staged_rows_fails_the_run_and_keeps_the_memberships(
    make_config, monkeypatch
):
    # given a good run
    archetype_population(40)
    config = make_config(k_max=6, min_cluster_size=5)
    good = recluster(config_id=config.pk)
    assert good is not None and good.status == RunStatus.SUCCEEDED
    before = set(
        Membership.objects.filter(exited_at__isnull=True).values_list("segment_id", "profile_id")
    )

    # when rows staged by the next run's chunks are lost before its swap (an
    # unlogged table after a crash)
    def lose(token: int) -> None:
        WrittenStaging.objects.filter(token=token, chunk=1).delete()

    _before_swap(monkeypatch, lose)
    _with_chunks(monkeypatch, 50)
    run = recluster(config_id=config.pk)

    # then the run fails, saying so, and the previous memberships stay
    assert run is not None and run.status == RunStatus.FAILED
    assert run.error == (
        f"150 of the 200 memberships staged under {run.pk} are there; nothing was swapped"
    )
    config.refresh_from_db()
    assert config.current_run_id == good.pk
    after = set(
        Membership.objects.filter(exited_at__isnull=True).values_list("segment_id", "profile_id")
    )
    assert after == before
    assert not WrittenStaging.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_profiles_erased_or_merged_before_the_swap_are_left_out(make_config, monkeypatch):
    # given a run whose chunks staged every profile
    population = archetype_population(40)
    config = make_config(k_max=6, min_cluster_size=5)
    from apps.identity.models import Profile

    erased, merged, into = (population.profile_ids[i] for i in (3, 7, 8))

    # when, before its swap, one staged profile is erased and one merged
    def meddle(token: int) -> None:
        assert WrittenStaging.objects.filter(token=token, profile_id=erased).exists()
        Profile.objects.filter(pk=erased).delete()
        Profile.objects.filter(pk=merged).update(merged_into_id=into)

    _before_swap(monkeypatch, meddle)
    _with_chunks(monkeypatch, 50)
    run = recluster(config_id=config.pk)

    # then the run succeeds (its commit too) without them, and says how many
    assert run is not None and run.status == RunStatus.SUCCEEDED, run.error
    run.refresh_from_db()
    assert run.model["skipped_at_swap"] == 2
    members = set(
        Membership.objects.filter(exited_at__isnull=True).values_list("profile_id", flat=True)
    )
    assert len(members) == 198 and erased not in members and merged not in members
    assert into in members


@pytest.mark.django_db
def test_what_a_stopped_run_staged_is_dropped_by_the_next_run(make_config):
    # given a run left "running" by a worker that stopped, with rows staged
    archetype_population(40)
    config = make_config(k_max=6, min_cluster_size=5, time_limit_seconds=60)
    stopped = ClusteringRun.objects.create(config=config, status=RunStatus.RUNNING)
    from datetime import timedelta

    from django.utils import timezone

    ClusteringRun.objects.filter(pk=stopped.pk).update(
        started_at=timezone.now() - timedelta(hours=2)
    )
    pid = ProfileFeatures.objects.values_list("profile_id", flat=True).first()
    WrittenStaging.objects.create(token=stopped.pk, chunk=0, slot=0, profile_id=pid, distance=1)

    # when the next run of the config runs
    run = recluster(config_id=config.pk)

    # then it succeeds, the stopped one is failed, and nothing of it stays staged
    assert run is not None and run.status == RunStatus.SUCCEEDED, run.error
    stopped.refresh_from_db()
    assert stopped.status == RunStatus.FAILED
    assert not WrittenStaging.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("algorithm", "values"),
    [
        ("agglomerative", {"fit_sample_size": 300, "k_max": 7}),
        ("dbscan", {"fit_sample_size": 600, "eps": 0.6, "min_samples": 8}),
    ],
)
def test_a_sampled_fit_in_chunks_keeps_its_own_labels(make_config, monkeypatch, algorithm, values):
    # given a fit on a sample (its profiles keep the fit's labels, noise included)
    archetype_population(200)
    config_one = make_config(key="one", algorithm=algorithm, min_cluster_size=20, **values)
    config_many = make_config(key="many", algorithm=algorithm, min_cluster_size=20, **values)

    # when it runs in one chunk, and in chunks of 137
    _with_chunks(monkeypatch, 10_000)
    one = recluster(config_id=config_one.pk)
    _with_chunks(monkeypatch, 137)
    many = recluster(config_id=config_many.pk)

    # then both place the same profiles in the same clusters (noise in none)
    assert one is not None and one.status == RunStatus.SUCCEEDED, one.error
    assert many is not None and many.status == RunStatus.SUCCEEDED, many.error
    assert many.chunks.count() == -(-1000 // 137)
    kept = sum(len(c.kept_labels) for c in many.chunks.all())
    assert kept == many.sample_size
    _assert_same(_outcome(one), _outcome(many))


def _membership_rows_read(plan: dict[str, Any]) -> int:
    """Rows the scans of segments_membership in an EXPLAIN ANALYZE plan returned."""
    own = plan["Actual Rows"] * plan.get("Actual Loops", 1)
    here = own if plan.get("Relation Name") == "segments_membership" else 0
    return here + sum(_membership_rows_read(p) for p in plan.get("Plans", []))


@pytest.mark.django_db
def test_a_chunk_reads_only_its_range_of_the_memberships(make_config):
    # given a run's clusters (200 members), one of them the population
    from django.db import connection

    from apps.clustering.extract import _query

    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL plan")
    archetype_population(40)
    config = make_config(k_max=6, min_cluster_size=5)
    run = recluster(config_id=config.pk)
    assert run is not None and run.status == RunStatus.SUCCEEDED
    segments = list(run.clusters.order_by("index").values_list("segment_id", flat=True))
    ids = sorted(ProfileFeatures.objects.values_list("profile_id", flat=True))
    lo, hi = ids[20], ids[59]

    # when a chunk of 40 of them is extracted (each table scanned once, whole)
    sql, params = _query(
        ["orders_count"],
        postgres=True,
        population_segment_id=segments[0],
        previous_segments=segments,
        profile_ids=None,
        id_range=(lo, hi),
    )
    from django.utils import timezone

    params["now"] = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute("SET LOCAL enable_nestloop = off")
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0][0]["Plan"]

    # then the membership scans return only rows of its range (twice at most:
    # the population's and the previous clusters'), not all 200 members
    assert _membership_rows_read(plan) <= 2 * 40


@pytest.mark.django_db
def test_waiting_for_workers_polls_twice_a_second_reading_only_the_states(make_config):
    # given a running run whose one chunk a worker is at
    import uuid

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from apps.clustering.fitting import RunTimeout

    config = make_config()
    run = ClusteringRun.objects.create(config=config, status=RunStatus.RUNNING)
    RunChunk.objects.create(
        run=run,
        index=0,
        first_id=uuid.UUID(int=0),
        last_id=uuid.UUID(int=2**128 - 1),
        status=ChunkStatus.RUNNING,
        claimed_at=timezone.now(),
        partial={"n": 1, "sizes": list(range(10_000))},
    )

    # when the run waits 1.2 s for it
    with CaptureQueriesContext(connection) as queries, pytest.raises(RunTimeout):
        chunks_module.chunks_work(
            run,
            [],
            None,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            dispatch=False,
            local=False,
            deadline=time.monotonic() + 1.2,
        )

    # then it looked about every half second, at the chunks' states only
    polls = [q["sql"] for q in queries.captured_queries if "clustering_runchunk" in q["sql"]]
    assert 2 <= len(polls) <= 4
    assert not any('"partial"' in sql or '"kept_labels"' in sql for sql in polls)


@pytest.mark.django_db
def test_a_straggler_leaves_alone_a_chunk_taken_back_from_it(make_config, monkeypatch):
    # given a chunk of a running run claimed by a worker, then taken back by
    # another (its claim is newer)
    archetype_population(40)
    config = make_config(k_max=6, min_cluster_size=5)
    _with_chunks(monkeypatch, 70)
    run = _held_at_swap(config, monkeypatch)
    WrittenStaging.objects.filter(token=run.pk, chunk=1).delete()
    RunChunk.objects.filter(run=run, index=1).update(status=ChunkStatus.QUEUED)
    straggler = chunk_claim(run.pk, index=1)
    assert straggler is not None
    from datetime import timedelta

    RunChunk.objects.filter(pk=straggler.pk).update(
        claimed_at=straggler.claimed_at + timedelta(seconds=1), done_by="other:2"
    )

    # when the straggler finishes it, and when it fails at it
    chunk_run(straggler, AssignModel.of_run(run))

    def breaking(*args: Any) -> Any:
        raise OSError("late")

    monkeypatch.setattr(chunks_module, "chunk_assign", breaking)
    chunk_run(straggler, AssignModel.of_run(run))

    # then it staged nothing and the chunk is still the other worker's, running
    assert not WrittenStaging.objects.filter(token=run.pk, chunk=1).exists()
    chunk = RunChunk.objects.get(pk=straggler.pk)
    assert (chunk.status, chunk.done_by) == (ChunkStatus.RUNNING, "other:2")


def _breaking_at(monkeypatch: Any, index: int, error: BaseException) -> None:
    """The chunk starting at the ``index``-th profile (by id) raises ``error``."""
    original = chunks_module.chunk_assign
    ids = sorted(p.bytes for p in ProfileFeatures.objects.values_list("profile_id", flat=True))
    first = ids[index]

    def breaking(model: Any, data: Any, kept: Any) -> Any:
        if len(data) and data.profile_ids[0].tobytes() == first:
            raise error
        return original(model, data, kept)

    monkeypatch.setattr(chunks_module, "chunk_assign", breaking)


@pytest.mark.django_db
def test_a_time_limit_hit_in_a_chunk_worked_locally_is_the_runs_time_limit(
    make_config, monkeypatch
):
    # given a good run
    archetype_population(40)
    config = make_config(k_max=6, min_cluster_size=5)
    good = recluster(config_id=config.pk)
    assert good is not None and good.status == RunStatus.SUCCEEDED
    before = set(
        Membership.objects.filter(exited_at__isnull=True).values_list("segment_id", "profile_id")
    )

    # when the run task's soft time limit strikes inside its third chunk,
    # which the run's own process works
    _breaking_at(monkeypatch, 100, SoftTimeLimitExceeded())
    _with_chunks(monkeypatch, 50)
    run = recluster(config_id=config.pk)

    # then the run failed on its time limit (not "chunk 2 failed"), the chunk
    # says what stopped it, and the previous memberships stay
    assert run is not None and run.status == RunStatus.FAILED
    assert run.error == "the run went over its time limit; nothing was written"
    third = RunChunk.objects.get(run=run, index=2)
    assert third.status == ChunkStatus.FAILED
    assert third.error.startswith("SoftTimeLimitExceeded")
    assert not run.clusters.exists()
    config.refresh_from_db()
    assert config.current_run_id == good.pk
    after = set(
        Membership.objects.filter(exited_at__isnull=True).values_list("segment_id", "profile_id")
    )
    assert after == before
    assert not WrittenStaging.objects.exists()


@pytest.mark.django_db
def test_a_cleanup_that_fails_keeps_the_runs_own_error(make_config, monkeypatch):
    # given a run whose third chunk breaks, and a database that is gone by the
    # time the run drops what its first two chunks staged
    archetype_population(40)
    config = make_config(k_max=6, min_cluster_size=5)
    _breaking_at(monkeypatch, 100, OSError("node lost its disk"))
    _with_chunks(monkeypatch, 50)

    def database_down(token: int) -> None:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(run_module, "written_stage_drop", database_down)

    # when it runs
    run = recluster(config_id=config.pk)

    # then the run's error is the chunk's, not the cleanup's, and what is left
    # staged is dropped by the next run
    assert run is not None and run.status == RunStatus.FAILED
    assert run.error.startswith("chunk 2 failed: OSError: node lost its disk")
    run.refresh_from_db()
    assert run.error.startswith("chunk 2 failed: OSError: node lost its disk")
    assert WrittenStaging.objects.filter(token=run.pk).count() == 100
    monkeypatch.undo()
    later = recluster(config_id=config.pk)
    assert later is not None and later.status == RunStatus.SUCCEEDED
    assert not WrittenStaging.objects.exists()

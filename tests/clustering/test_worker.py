"""A run through a real Celery worker consuming from the configured broker
(Redis in CI), and two runs of one config never overlapping."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from apps.clustering import run as run_module
from apps.clustering.models import ClusteringRun, RunStatus
from apps.clustering.run import recluster
from apps.clustering.services import RunInProgress, run_start
from apps.segments.models import Membership
from cdp.celery import app as celery_app

from .archetypes import archetype_population


@pytest.mark.django_db(transaction=True)
def test_a_worker_runs_a_queued_run(not_eager: None, make_config) -> None:
    # given a population, a config, and a running worker
    archetype_population(60)
    config = make_config(k_max=6, min_cluster_size=5)
    with start_worker(
        celery_app, perform_ping_check=False, pool="solo", concurrency=1, loglevel="WARNING"
    ):
        # when a run is started (as the API does)
        queued = run_start(config=config)
        assert queued.status == RunStatus.QUEUED

        # then the worker runs it to the end
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            queued.refresh_from_db()
            if queued.status not in (RunStatus.QUEUED, RunStatus.RUNNING):
                break
            time.sleep(0.1)
    assert queued.status == RunStatus.SUCCEEDED, queued.error
    assert queued.chosen_k == 5
    assert Membership.objects.filter(exited_at__isnull=True).count() == 300
    # and delivering the same task again repeats nothing
    recluster(config_id=config.pk, run_id=queued.pk)
    assert ClusteringRun.objects.count() == 1
    assert Membership.objects.count() == 300


@pytest.mark.django_db(transaction=True)
def test_two_runs_of_one_config_never_overlap(make_config, monkeypatch) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL: two sessions at once (SQLite checks a running run)")
    # given a config, and a first run that holds still once it has started
    archetype_population(40)
    config = make_config(k_max=5, min_cluster_size=5)
    started, release = threading.Event(), threading.Event()
    original = run_module.features_extract

    def held(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "first":
            started.set()
            release.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(run_module, "features_extract", held)
    results: dict[str, Any] = {}

    def first() -> None:
        try:
            results["first"] = recluster(config_id=config.pk)
        finally:
            connection.close()

    thread = threading.Thread(target=first, name="first")
    thread.start()
    assert started.wait(10)

    # when a second run of the same config starts meanwhile
    second = recluster(config_id=config.pk)
    release.set()
    thread.join(30)

    # then the second did nothing, and the first finished
    assert second is None
    assert results["first"].status == RunStatus.SUCCEEDED
    assert ClusteringRun.objects.count() == 1


@pytest.mark.django_db
def test_a_running_run_blocks_a_second_start(make_config) -> None:
    # given a config with a run in progress
    config = make_config()
    running = ClusteringRun.objects.create(
        config=config, status=RunStatus.RUNNING, started_at=timezone.now()
    )

    # when another run is asked for, then it is refused, naming the one in progress
    with pytest.raises(RunInProgress) as refused:
        run_start(config=config)
    assert refused.value.run == running
    if connection.vendor != "postgresql":
        # and on SQLite, where there is no advisory lock, a run checks for it
        assert recluster(config_id=config.pk) is None


@pytest.mark.django_db
def test_the_command_runs_a_config_and_shows_its_result(make_config, capsys) -> None:
    # given the archetypes and a config
    archetype_population(60)
    make_config(k_max=6, min_cluster_size=5)

    # when the command runs it
    call_command("recluster", "shoppers")

    # then it says what it found, and the progress went to stderr
    out, err = capsys.readouterr()
    assert "shoppers: run" in out and "succeeded, k=5, 300 profiles" in out
    assert "shoppers" in err and "5/5" in err
    with pytest.raises(CommandError, match="no clustering config with key 'nope'"):
        call_command("recluster", "nope")


@pytest.mark.django_db
def test_a_run_lost_long_ago_does_not_block_a_new_one(make_config) -> None:
    # given a run queued longer ago than the time limit allows (its task was lost)
    config = make_config(time_limit_seconds=60)
    lost = ClusteringRun.objects.create(config=config, status=RunStatus.QUEUED)
    ClusteringRun.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(hours=1))

    # when a run is started, then it is, and the lost one says what became of it
    started = run_start(config=config)
    lost.refresh_from_db()
    assert started.pk != lost.pk
    assert lost.status == RunStatus.FAILED
    assert lost.error == "lost: its worker stopped, or its task never arrived"

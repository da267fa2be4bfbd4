"""Export file retention: a daily beat task deletes the files of runs older
than CDP["EXPORT_FILE_RETENTION_DAYS"]; the run keeps its record, admin shows
the file as expired, and its download answers 410 Gone with a clear message."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest
from celery import current_app
from django.conf import settings
from django.test import Client
from django.utils import timezone

from apps.exports.files import exports_dir
from apps.exports.models import ExportFile, ExportRun
from apps.exports.tasks import export_files_expire

from .conftest import run_now

pytestmark = pytest.mark.django_db


def _aged(run: ExportRun, days: float) -> ExportRun:
    ExportRun.objects.filter(pk=run.pk).update(finished_at=timezone.now() - timedelta(days=days))
    run.refresh_from_db()
    return run


@pytest.fixture
def runs(person: Any, audience: Any, destination: Any) -> tuple[ExportRun, ExportRun]:
    """An Optimizely run finished 31 days ago and one finished 29 days ago."""
    shoes = audience("shoes", [person("ada-lovelace"), person("bob-marley")])
    optimizely, _ = destination("optimizely", [shoes], settings={"max_bytes": 16})
    # (13 and 11 bytes a line, at most 16 a file: two files a run)
    old = _aged(run_now(optimizely), 31)
    recent = _aged(run_now(optimizely), 29)
    return old, recent


def _paths(run: ExportRun) -> list[Any]:
    return [exports_dir() / f.path for f in run.export_files.all()]


def test_files_older_than_the_retention_are_deleted_and_marked_expired(
    runs: tuple[ExportRun, ExportRun], settings: Any
) -> None:
    # given the default retention of 30 days, and two runs' files on disk
    settings.CDP = {**settings.CDP, "EXPORT_FILE_RETENTION_DAYS": 30}
    old, recent = runs
    assert len(_paths(old)) == 2 and all(p.is_file() for p in _paths(old) + _paths(recent))

    # when beat's daily task runs
    expired = export_files_expire.delay().get()

    # then the old run's files are gone from disk (its directory too), their rows
    # and the run remain, marked expired; the recent run's files are untouched
    assert expired == 2
    assert not any(p.exists() for p in _paths(old))
    assert not _paths(old)[0].parent.exists()
    assert ExportRun.objects.filter(pk=old.pk).exists()
    assert all(f.expired_at is not None for f in old.export_files.all())
    assert all(p.is_file() for p in _paths(recent))
    assert all(f.expired_at is None for f in recent.export_files.all())
    # and a second run of the task has nothing left to do
    assert export_files_expire() == 0


def test_what_a_failed_run_left_on_disk_goes_after_the_retention_too(
    runs: tuple[ExportRun, ExportRun], settings: Any
) -> None:
    # given a run that failed half-way through writing (a file on disk, no file
    # rows) 31 days ago, and one that failed yesterday
    settings.CDP = {**settings.CDP, "EXPORT_FILE_RETENTION_DAYS": 30}
    old, recent = runs

    def failed(days: float) -> Any:
        run = ExportRun.objects.create(destination=old.destination, status="failed")
        ExportRun.objects.filter(pk=run.pk).update(
            finished_at=timezone.now() - timedelta(days=days)
        )
        leftover = exports_dir() / old.destination.key / f"run-{run.pk}" / "partial.txt"
        leftover.parent.mkdir(parents=True)
        leftover.write_text("ada-lovelace\n")
        return leftover

    stale, fresh = failed(31), failed(1)

    # when the task runs
    export_files_expire()

    # then the old leftover is gone with its directory, yesterday's stays
    assert not stale.parent.exists()
    assert fresh.is_file()
    assert all(p.is_file() for p in _paths(recent))


def test_a_retention_of_zero_keeps_files(runs: tuple[ExportRun, ExportRun], settings: Any) -> None:
    settings.CDP = {**settings.CDP, "EXPORT_FILE_RETENTION_DAYS": 0}
    old, _ = runs
    assert export_files_expire() == 0
    assert all(p.is_file() for p in _paths(old))


def test_a_shorter_retention_expires_the_more_recent_run_too(
    runs: tuple[ExportRun, ExportRun], settings: Any
) -> None:
    settings.CDP = {**settings.CDP, "EXPORT_FILE_RETENTION_DAYS": 7}
    assert export_files_expire() == 4
    assert ExportFile.objects.filter(expired_at__isnull=True).count() == 0


def test_admin_shows_the_file_as_expired_and_its_download_answers_410(
    runs: tuple[ExportRun, ExportRun], admin_client: Client
) -> None:
    # given the old run's files expired
    old, recent = runs
    export_files_expire()
    gone = old.export_files.first()
    assert gone is not None

    # when its download is asked for
    response = admin_client.get(f"/admin/exports/exportrun/file/{gone.pk}/download/")

    # then 410 Gone, saying what happened and what to do
    assert response.status_code == 410
    text = response.content.decode()
    assert gone.name in text and "expired" in text and "30 days" in text
    assert "start a new run" in text
    # and the run's page lists the file as expired, without a download link;
    # the recent run's files still download
    page = admin_client.get(f"/admin/exports/exportrun/{old.pk}/change/").content.decode()
    assert "expired" in page and f"file/{gone.pk}/download/" not in page
    fresh = recent.export_files.first()
    assert fresh is not None
    assert (
        admin_client.get(f"/admin/exports/exportrun/file/{fresh.pk}/download/").status_code == 200
    )


def test_the_task_is_scheduled_daily_by_beat() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["exports-files-expire"]
    assert entry["task"] == "apps.exports.tasks.export_files_expire"
    assert entry["task"] in current_app.tasks
    # once a day: a crontab at a fixed hour and minute
    schedule = entry["schedule"]
    assert len(schedule.hour) == 1 and len(schedule.minute) == 1


def test_a_file_that_cannot_be_deleted_blocks_none_of_the_others(
    runs: tuple[ExportRun, ExportRun], settings: Any, monkeypatch: Any, admin_client: Client
) -> None:
    # given the retention of 7 days (all four files due), batches of one file, and
    # the first file (lowest pk) replaced by a non-empty directory: unlink fails
    settings.CDP = {**settings.CDP, "EXPORT_FILE_RETENTION_DAYS": 7}
    monkeypatch.setattr("apps.exports.services.EXPIRE_BATCH", 1)
    old, _ = runs
    stuck = ExportFile.objects.order_by("pk").first()
    assert stuck is not None
    blocker = exports_dir() / stuck.path
    blocker.unlink()
    blocker.mkdir()
    (blocker / "inside").write_text("x")

    # when the task runs
    first = export_files_expire()

    # then the other three files are deleted and marked expired (the batches past
    # the stuck file went on); the stuck one is not marked expired, says why (the
    # error's kind, no path) and is shown so in admin
    assert first == 3
    others = ExportFile.objects.exclude(pk=stuck.pk)
    assert all(f.expired_at is not None for f in others)
    assert not any((exports_dir() / f.path).exists() for f in others)
    stuck.refresh_from_db()
    assert stuck.expired_at is None
    assert "IsADirectoryError" in stuck.expire_error and stuck.path not in stuck.expire_error
    page = admin_client.get(f"/admin/exports/exportrun/{old.pk}/change/").content.decode()
    assert "not deleted" in page and "IsADirectoryError" in page

    # and the next day's run tries it again: once it can go (here the run
    # directory's sweep took it), it is marked expired and the error cleared
    assert export_files_expire() == 1
    stuck.refresh_from_db()
    assert stuck.expired_at is not None and stuck.expire_error == ""
    assert not blocker.exists()


def test_a_run_directory_without_its_record_goes_only_once_past_the_retention(
    runs: tuple[ExportRun, ExportRun], settings: Any
) -> None:
    # given two run directories whose ExportRun rows no longer exist: one last
    # written 31 days ago, one written today
    settings.CDP = {**settings.CDP, "EXPORT_FILE_RETENTION_DAYS": 30}
    old, _ = runs
    missing = (ExportRun.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1

    def orphan(number: int, days: float) -> Any:
        leftover = exports_dir() / old.destination.key / f"run-{number}" / "partial.txt"
        leftover.parent.mkdir(parents=True)
        leftover.write_text("ada-lovelace\n")
        stamp = (timezone.now() - timedelta(days=days)).timestamp()
        os.utime(leftover, (stamp, stamp))
        os.utime(leftover.parent, (stamp, stamp))
        return leftover

    stale, fresh = orphan(missing + 100, 31), orphan(missing + 101, 0)

    # when the task runs
    export_files_expire()

    # then the one past the retention is gone, today's stays
    assert not stale.parent.exists()
    assert fresh.is_file()

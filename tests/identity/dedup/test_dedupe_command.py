"""``manage.py dedupe`` and the ``dedup_run`` task."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from django.core.management import call_command

from apps.identity.dedup.models import DedupRun
from apps.identity.dedup.tasks import dedup_run as dedup_run_task
from apps.identity.models import Profile

from .conftest import ROBERT, variant

pytestmark = pytest.mark.django_db


def test_dedupe_prints_progress_on_stderr_and_a_summary(
    make_profile: Callable[..., Profile],
) -> None:
    # given
    make_profile(traits=ROBERT)
    make_profile(traits=variant(ROBERT, lastName="Kowalsky"))
    make_profile(traits={"firstName": "Ann", "lastName": "Lee", "email": "ann@lee.org"})
    out, err = io.StringIO(), io.StringIO()

    # when
    call_command("dedupe", "--full", stdout=out, stderr=err)

    # then
    run = DedupRun.objects.get()
    summary = out.getvalue()
    assert f"Dedup full run #{run.pk}: succeeded in" in summary
    assert "profiles scanned            3" in summary
    assert "auto-merged                 1" in summary
    assert "queued for review           0" in summary
    progress = err.getvalue()
    assert "loading profiles" in progress
    assert "comparing pairs" in progress
    assert "auto-merging" in progress
    assert "100%" in progress


def test_dedupe_is_incremental_after_a_full_run(make_profile: Callable[..., Profile]) -> None:
    # given
    make_profile(traits=ROBERT)
    call_command("dedupe", stdout=io.StringIO(), stderr=io.StringIO())
    out = io.StringIO()

    # when
    call_command("dedupe", "--no-progress", stdout=out, stderr=io.StringIO())

    # then
    assert "Dedup incremental run" in out.getvalue()
    assert "profiles scanned            0" in out.getvalue()


def test_task_runs_dedup_and_returns_the_run_id(make_profile: Callable[..., Profile]) -> None:
    # given
    make_profile(traits=ROBERT)
    make_profile(traits=variant(ROBERT, phone="(201) 555-0174"))

    # when
    run_id = dedup_run_task.delay(full=True).get()

    # then
    run = DedupRun.objects.get()
    assert run_id == run.pk
    assert (run.mode, run.status, run.auto_merged) == ("full", "succeeded", 1)


def test_task_does_nothing_when_disabled(make_profile: Callable[..., Profile]) -> None:
    # given
    from apps.identity.dedup.models import DedupConfig

    DedupConfig.objects.create(pk=1, enabled=False)
    make_profile(traits=ROBERT)

    # when
    run_id = dedup_run_task.delay().get()

    # then
    assert run_id is None
    assert not DedupRun.objects.exists()

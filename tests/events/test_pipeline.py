"""The processing pipeline (apps/events/pipeline.py), with stages registered from a
test-only app (tests/hooks_app): order, exactly once on retry, failures counted,
shown and never blocking identity resolution, the sweep after a crash."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.events import pipeline
from apps.events.models import Event, PipelineBatch
from apps.events.pipeline import MAX_ATTEMPTS, pipeline_batch_run, stages
from apps.events.services import events_process
from apps.events.tasks import pipeline_sweep
from tests.hooks_app.models import Written
from tests.registry import emptied, registered

pytestmark = pytest.mark.django_db


def _writer(what: str) -> Callable[[list[Event]], None]:
    """A stage that writes one row per event to its own table."""

    def stage(events: list[Event]) -> None:
        Written.objects.bulk_create([Written(what=what, key=str(e.id)) for e in events])

    return stage


def _failing(what: str) -> Callable[[list[Event]], None]:
    """A stage that writes, then raises: its writes must not stay."""

    def stage(events: list[Event]) -> None:
        _writer(what)(events)
        raise RuntimeError("stage is broken")

    return stage


def _batch(user: str = "u1", n: int = 3) -> dict[str, Any]:
    return {
        "batch": [
            {"type": "track", "userId": user, "event": "E", "messageId": f"{user}-{i}"}
            for i in range(n)
        ]
    }


def test_stages_run_in_their_order_on_processed_events(post_events):
    # given two stages registered out of order, the later one recording what it saw
    seen: list[tuple[str, list[Any]]] = []

    def second(events: list[Event]) -> None:
        seen.append(("second", [e.profile_id for e in events]))
        _writer("second")(events)

    with (
        registered(stages, "test.second", second, order=20),
        registered(stages, "test.first", _writer("first"), order=10),
    ):
        # when
        post_events("/v1/batch", _batch())

    # then: first wrote before second, each event once, with its profile resolved
    rows = list(Written.objects.order_by("seq").values_list("what", flat=True))
    assert rows == ["first"] * 3 + ["second"] * 3
    assert len(seen) == 1 and None not in seen[0][1]
    assert PipelineBatch.objects.count() == 0  # done, and gone


def test_each_event_passes_each_stage_exactly_once_on_retry(post_events):
    # given a batch on which stage a passed and stage b failed once (after writing)
    calls = {"b": 0}

    def b_fails_once(events: list[Event]) -> None:
        calls["b"] += 1
        _writer("b")(events)
        if calls["b"] == 1:
            raise RuntimeError("crash in the middle")

    with (
        registered(stages, "test.a", _writer("a"), order=1),
        registered(stages, "test.b", b_fails_once, order=2),
    ):
        post_events("/v1/batch", _batch())
        batch = PipelineBatch.objects.get()
        assert batch.done_stages == ["test.a"]
        PipelineBatch.objects.update(next_attempt_at=None)

        # when the work is delivered again, twice, and the resolution task is
        # retried for the same events
        first = pipeline_batch_run(batch_id=batch.id)
        again = pipeline_batch_run(batch_id=batch.id)
        resolved_again = events_process(event_ids=list(Event.objects.values_list("id", flat=True)))

    # then each stage saw each event once: a never again, b once it passed
    assert (first, again, resolved_again) == ("done", "busy", 0)
    assert Written.objects.filter(what="a").count() == 3
    assert Written.objects.filter(what="b").count() == 3
    assert calls["b"] == 2
    assert not PipelineBatch.objects.exists()


def test_a_failing_stage_is_counted_and_does_not_block_identity_resolution(post_events):
    # given a stage that fails, after one that works
    with (
        registered(stages, "test.ok", _writer("ok"), order=1),
        registered(stages, "test.broken", _failing("broken"), order=2),
    ):
        # when
        response = post_events("/v1/batch", _batch())

    # then the events are stored and resolved all the same
    assert response.status_code == 200
    assert Event.objects.filter(processed_at__isnull=False, profile__isnull=False).count() == 3
    # the working stage kept its writes, the failing one none of them
    assert Written.objects.filter(what="ok").count() == 3
    assert not Written.objects.filter(what="broken").exists()
    batch = PipelineBatch.objects.get()
    assert batch.done_stages == ["test.ok"]
    assert (batch.failing_stage, batch.attempts, batch.failures_total) == ("test.broken", 1, 1)
    assert batch.last_error == "RuntimeError: stage is broken"
    assert batch.next_attempt_at > timezone.now()


def test_a_stage_that_keeps_failing_is_parked_not_retried_forever(post_events):
    # given a broken stage, and the stage after it
    with (
        registered(stages, "test.broken", _failing("broken"), order=1),
        registered(stages, "test.after", _writer("after"), order=2),
    ):
        post_events("/v1/batch", _batch())
        batch = PipelineBatch.objects.get()

        # when every retry comes due and fails
        outcomes = []
        for _ in range(MAX_ATTEMPTS + 2):
            PipelineBatch.objects.filter(id=batch.id).update(next_attempt_at=None)
            outcomes.append(pipeline_batch_run(batch_id=batch.id))

    # then it stops at the last attempt, parked, and the later stage never ran
    batch.refresh_from_db()
    assert outcomes == ["failed"] * (MAX_ATTEMPTS - 1) + ["waiting"] * 3
    assert batch.attempts == MAX_ATTEMPTS
    assert batch.parked_at is not None
    assert not Written.objects.filter(what="after").exists()


def test_a_parked_batch_is_shown_in_admin_and_retried_from_there(post_events, admin_client):
    # given a parked batch whose stage has been fixed since
    with registered(stages, "test.flaky", _failing("flaky")):
        post_events("/v1/batch", _batch())
    batch = PipelineBatch.objects.get()
    PipelineBatch.objects.filter(id=batch.id).update(
        attempts=MAX_ATTEMPTS, parked_at=timezone.now()
    )

    with registered(stages, "test.flaky", _writer("flaky")):
        # when the admin lists the batches, then retries the parked one
        listing = admin_client.get("/admin/events/pipelinebatch/?parked_at__isempty=0")
        retried = admin_client.post(
            "/admin/events/pipelinebatch/",
            {"action": "retry", "_selected_action": [batch.id]},
            follow=True,
        )

    # then
    assert listing.status_code == 200
    assert [b.id for b in listing.context["cl"].result_list] == [batch.id]
    assert "Failing stages: test.flaky: 1 failing (1 parked)." in listing.content.decode()
    assert "Retried: 1 done" in retried.content.decode()
    assert Written.objects.filter(what="flaky").count() == 3
    assert not PipelineBatch.objects.exists()


def test_the_sweep_runs_what_a_crash_left_behind(post_events, monkeypatch):
    # given resolved events whose batch never ran (the worker died after the commit)
    with registered(stages, "test.a", _writer("a")):
        monkeypatch.setattr(
            "apps.events.services.pipeline_batch_run", lambda **kwargs: "crashed before"
        )
        post_events("/v1/batch", _batch())
        monkeypatch.undo()
        assert not Written.objects.exists()
        # a batch too young to sweep is left to the task that made it
        assert pipeline_sweep() == 0
        old = timezone.now() - timedelta(seconds=pipeline.SWEEP_AFTER_SECONDS + 1)
        PipelineBatch.objects.update(created_at=old)

        # when
        ran = pipeline_sweep()

    # then
    assert ran == 1
    assert Written.objects.filter(what="a").count() == 3
    assert not PipelineBatch.objects.exists()


def test_no_stage_costs_nothing(post_events):
    # given no registered stage
    with emptied(stages):
        # when
        post_events("/v1/batch", _batch())

    # then no bookkeeping row is written
    assert not PipelineBatch.objects.exists()


def test_erased_events_are_not_passed_to_a_stage(post_events):
    # given a batch whose events were deleted before its stage ran
    with registered(stages, "test.a", _writer("a")):
        batch = PipelineBatch.objects.create(event_ids=[10**9])

        # when
        outcome = pipeline_batch_run(batch_id=batch.id)

    # then
    assert outcome == "done"
    assert not Written.objects.exists()

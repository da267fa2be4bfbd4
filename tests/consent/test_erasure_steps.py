"""How an erasure runs: what arrives meanwhile, failures, retries, the task's pace,
and the erasers other apps register."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from typing import Any

import orjson
import pytest
from django.test import Client
from django.utils import timezone

from apps.consent.hashing import keyed_hash
from apps.consent.models import (
    DataSubjectRequest,
    ErasureHookOutcome,
    RequestEvent,
    SuppressionEntry,
)
from apps.consent.registry import PersonalDataEraser, deletion_hooks, personal_data_erasers
from apps.consent.services.dsr import dsr_create, dsr_transition
from apps.consent.services.erasure import (
    MAX_STEP_FAILURES,
    erasure_resume,
    erasure_run,
    erasure_start,
)
from apps.events.models import Event
from apps.events.services import events_process
from apps.identity.models import Identifier, Profile
from apps.identity.selectors import profile_get_by_external_id
from tests import registry
from tests.events.factories import WEB_WRITE_KEY

pytestmark = pytest.mark.django_db


@pytest.fixture
def post_pending(client: Client, source: Any, django_capture_on_commit_callbacks: Any) -> Any:
    """Ingest events and leave them unprocessed (their task not run yet)."""

    def post(*events: dict[str, Any]) -> list[int]:
        auth = base64.b64encode(f"{WEB_WRITE_KEY}:".encode()).decode()
        with django_capture_on_commit_callbacks(execute=False):
            response = client.post(
                "/v1/batch",
                data=orjson.dumps({"batch": list(events)}),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Basic {auth}",
            )
        assert response.status_code == 200
        return list(
            Event.objects.filter(message_id__in=[e["messageId"] for e in events]).values_list(
                "id", flat=True
            )
        )

    return post


def _started(subject: str = "user_id:ivy-1") -> DataSubjectRequest:
    request = dsr_create(type="erasure", subject=subject)
    dsr_transition(request=request, status="verified")
    return erasure_start(request=request)


@pytest.fixture
def registered() -> Iterator[Any]:
    """``registered("hook", name, fn)`` or ``registered("eraser", name, fn)`` (a
    local-step eraser), for the test's duration (tests/registry.py)."""
    with ExitStack() as stack:

        def register(kind: str, name: str, fn: Any) -> None:
            if kind == "hook":
                stack.enter_context(registry.registered(deletion_hooks, name, fn))
            else:
                eraser = PersonalDataEraser(erase=fn)
                stack.enter_context(registry.registered(personal_data_erasers, name, eraser))

        yield register


def test_identifiers_attached_meanwhile_are_suppressed_too(ivy: Profile, post_pending: Any) -> None:
    # given: an event naming a second address of Ivy's was accepted, not processed
    [pending] = post_pending(
        {
            "type": "identify",
            "userId": "ivy-1",
            "traits": {"email": "ivy.work@example.com"},
            "messageId": "i2",
        }
    )
    request = _started()
    # when: the erasure has collected her identifiers, and then a worker that read
    # the suppression list just before resolves that event (processing itself now
    # drops events naming a suppressed id: see the next assertion)
    assert erasure_run(request_id=request.id, max_steps=1) is False
    from apps.identity.services import IdentityClaim, profiles_resolve

    event = Event.objects.get(pk=pending)
    profiles_resolve(
        claims=[
            IdentityClaim(
                identifiers=[("user_id", "ivy-1")],
                timestamp=event.timestamp,
                traits=event.traits,
                event_id=event.id,
            )
        ]
    )
    assert Identifier.objects.filter(value="ivy.work@example.com", profile=ivy).exists()
    assert events_process(event_ids=[pending]) == 1
    assert not Event.objects.filter(pk=pending).exists()
    assert erasure_run(request_id=request.id) is True
    # then: that address is suppressed as well, and nothing of her is left
    hashes = set(SuppressionEntry.objects.values_list("value_hash", flat=True))
    assert keyed_hash("email", "ivy.work@example.com") in hashes
    assert keyed_hash("email", "ivy@example.com") in hashes
    assert not Profile.objects.filter(pk=ivy.pk).exists()
    assert Event.objects.count() == 0


def test_pending_events_that_would_rebuild_the_person_are_erased(
    ivy: Profile, post_pending: Any
) -> None:
    # given: a new device sent her address before the erasure; not processed yet
    [pending] = post_pending(
        {
            "type": "identify",
            "anonymousId": "ivys-new-phone",
            "traits": {"email": "IVY@example.com"},
            "messageId": "i3",
        },
        {"type": "track", "anonymousId": "someone", "event": "Hi", "messageId": "s1"},
    )[:1]
    # when
    request = _started()
    assert erasure_run(request_id=request.id) is True
    # then: that event is gone, so processing the rest cannot bring her back
    assert not Event.objects.filter(pk=pending).exists()
    events_process(event_ids=list(Event.objects.values_list("id", flat=True)))
    assert profile_get_by_external_id(external_id="email:ivy@example.com") is None
    assert list(Event.objects.values_list("message_id", flat=True)) == ["s1"]
    request.refresh_from_db()
    assert request.erasure_summary["counts"]["events"] == 2  # i1, and i3 swept


def test_a_processed_event_of_someone_else_with_her_anonymous_id_stays(
    ivy: Profile, post_events: Any
) -> None:
    # given: her anonymous id on an event that identity gave to another person
    post_events("/v1/identify", {"userId": "olga", "traits": {}, "messageId": "o1"})
    olga = profile_get_by_external_id(external_id="user_id:olga")
    Event.objects.filter(message_id="o1").update(anonymous_id="shared-kiosk")
    Identifier.objects.create(profile=ivy, type="anonymous_id", value="shared-kiosk")
    # when
    request = _started()
    assert erasure_run(request_id=request.id) is True
    # then: processed events are erased by profile; Olga's event is hers
    assert list(Event.objects.values_list("message_id", "profile_id")) == [("o1", olga.id)]


def test_a_failed_deletion_hook_is_retried_with_backoff(
    ivy: Profile, registered: Any, settings: Any
) -> None:
    settings.CDP = {**settings.CDP, "ERASURE_HOOK_RETRY_DELAYS": [60, 600]}
    calls = {"flaky": 0}

    def flaky(identifiers: Any) -> str:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise ConnectionError("destination down")
        return "ok"

    registered("hook", "flaky", flaky)
    request = _started()
    # when: the first attempt fails
    assert erasure_run(request_id=request.id) is False
    outcome = ErasureHookOutcome.objects.get(request=request, hook="flaky")
    assert (outcome.outcome, outcome.attempts) == ("failed", 1)
    assert outcome.next_attempt_at is not None
    assert 59 <= (outcome.next_attempt_at - timezone.now()).total_seconds() <= 60
    request.refresh_from_db()
    assert request.work_state["step"] == "hooks"
    assert "a deletion hook is retried at" in request.progress_note
    # then: running again before the time changes nothing
    assert erasure_run(request_id=request.id) is False
    assert calls["flaky"] == 1
    # when: the time has come, twice
    for attempt in (2, 3):
        ErasureHookOutcome.objects.filter(pk=outcome.pk).update(
            next_attempt_at=timezone.now() - timedelta(seconds=1)
        )
        done = erasure_run(request_id=request.id)
        assert calls["flaky"] == attempt
    # then: the third attempt worked and the erasure completed
    assert done is True
    outcome.refresh_from_db()
    assert (outcome.outcome, outcome.attempts, outcome.next_attempt_at) == ("ok", 3, None)
    request.refresh_from_db()
    assert request.status == "completed" and request.erasure_summary["hooks_failed"] == []


def test_a_hook_that_keeps_failing_completes_the_request_with_failures(
    ivy: Profile, registered: Any, admin_client: Any
) -> None:
    def broken(identifiers: Any) -> str:
        raise ConnectionError("destination down")

    registered("hook", "broken", broken)
    request = _started()
    # when: every attempt fails (test settings retry at once, twice)
    assert erasure_run(request_id=request.id) is True
    # then: the local erasure is complete, and the request says what failed
    outcome = ErasureHookOutcome.objects.get(request=request, hook="broken")
    assert (outcome.outcome, outcome.attempts, outcome.next_attempt_at) == ("failed", 3, None)
    request.refresh_from_db()
    assert request.status == "completed"
    assert request.erasure_summary["hooks_failed"] == ["broken"]
    last = RequestEvent.objects.filter(request=request).last()
    assert last is not None and last.note.startswith(
        "completed with failures: deletion hook(s) broken failed after every attempt"
    )
    # and admin shows it, in the list and on the request
    listing = admin_client.get("/admin/consent/datasubjectrequest/")
    assert b"with failures" in listing.content
    page = admin_client.get(f"/admin/consent/datasubjectrequest/{request.pk}/change/")
    assert b"Completed with failures: the deletion hook(s) broken failed" in page.content


def test_a_failing_step_is_recorded_and_retried_then_left_to_an_administrator(
    ivy: Profile, registered: Any, admin_client: Any
) -> None:
    from apps.consent.tasks import erasure_resume_stalled

    broken = {"yes": True}
    left = {"rows": 2}

    def memberships(person: Any, *, batch_size: int) -> int:
        if broken["yes"]:
            raise RuntimeError("segments table locked")
        deleted, left["rows"] = left["rows"], 0
        return deleted

    registered("eraser", "memberships", memberships)
    request = _started()
    # when: a step fails
    with pytest.raises(RuntimeError):
        erasure_run(request_id=request.id)
    # then: the request says so, without the error's text (it may hold personal data)
    request.refresh_from_db()
    assert request.status == "in_progress" and request.work_state["step"] == "local"
    assert request.progress_note == (
        "step local failed (RuntimeError), 1 time(s) in a row; it will be retried"
    )
    trail = RequestEvent.objects.filter(request=request, action="erasure step failed")
    assert [e.note for e in trail] == [request.progress_note]
    # the sweep retries it while it fails less than MAX_STEP_FAILURES times in a row
    stale = timezone.now() - timedelta(hours=1)
    DataSubjectRequest.objects.filter(pk=request.pk).update(updated_at=stale)
    with pytest.raises(RuntimeError):
        erasure_resume_stalled()
    for _ in range(MAX_STEP_FAILURES - 2):
        with pytest.raises(RuntimeError):
            erasure_run(request_id=request.id)
    request.refresh_from_db()
    assert request.work_state["failures"] == MAX_STEP_FAILURES
    assert request.progress_note.endswith(
        "stopped: an administrator must look, then resume the erasure"
    )
    DataSubjectRequest.objects.filter(pk=request.pk).update(updated_at=stale)
    assert erasure_resume_stalled() == 0
    page = admin_client.get(f"/admin/consent/datasubjectrequest/{request.pk}/change/")
    assert b'value="resume"' in page.content
    # when: the cause is fixed and an administrator resumes it
    broken["yes"] = False
    erasure_resume(request=request)
    assert erasure_run(request_id=request.id) is True
    request.refresh_from_db()
    assert request.status == "completed"
    assert request.erasure_summary["counts"]["memberships"] == 2


def test_personal_data_erasers_get_the_persons_profiles(ivy: Profile, registered: Any) -> None:
    seen: list[Any] = []

    left = {"rows": 4}

    def memberships(person: Any, *, batch_size: int) -> int:
        profile_ids = person.profile_ids
        # the profiles still exist when erasers run (their foreign keys resolve)
        assert Profile.objects.filter(id__in=profile_ids).count() == len(profile_ids)
        deleted, left["rows"] = left["rows"], 0
        if deleted:
            seen.append(sorted(profile_ids))
        return deleted

    registered("eraser", "test_memberships", memberships)
    request = _started()
    assert erasure_run(request_id=request.id) is True
    assert seen == [[ivy.id]]
    request.refresh_from_db()
    assert request.erasure_summary["counts"]["test_memberships"] == 4


def test_the_task_runs_a_bounded_number_of_steps_then_enqueues_the_rest(
    ivy: Profile, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apps.consent import tasks

    settings.CDP = {**settings.CDP, "ERASURE_STEPS_PER_TASK": 3}
    enqueued: list[tuple[Any, float]] = []
    original = tasks.erasure_run.apply_async

    def spy(args: Any, *rest: Any, countdown: float | None = None, **kwargs: Any) -> Any:
        if countdown is not None:  # not .delay() itself
            enqueued.append((args, countdown))
        return original(args, *rest, countdown=countdown, **kwargs)

    monkeypatch.setattr(tasks.erasure_run, "apply_async", spy)
    request = _started()
    # when: the task runs (eagerly here: each enqueued run happens at once)
    first = tasks.erasure_run.delay(str(request.id)).get()
    # then: it stopped after three steps and enqueued itself, until done
    assert first is False
    assert enqueued == [((str(request.id),), 0.0)] * 2
    request.refresh_from_db()
    assert request.status == "completed"


def test_her_ids_on_other_peoples_events_are_blanked_and_their_events_kept(
    ivy: Profile, post_events: Any
) -> None:
    # given: her device id, then someone else signing in on that device (different
    # user ids never merge, so his events stay his, carrying her device id)
    post_events("/v1/identify", {"userId": "ivy-1", "anonymousId": "dev-ivy", "messageId": "i2"})
    post_events(
        "/v1/batch",
        {
            "batch": [
                {"type": "track", "userId": "quinn", "anonymousId": "dev-ivy", "event": "V"},
                {"type": "alias", "userId": "quinn", "previousId": "dev-ivy"},
                {"type": "track", "userId": "quinn", "anonymousId": "dev-q", "event": "W"},
            ]
        },
    )
    quinn = profile_get_by_external_id(external_id="user_id:quinn")
    assert quinn is not None and quinn.pk != ivy.pk
    # when
    request = _started()
    assert erasure_run(request_id=request.id) is True
    # then: quinn keeps his three events, none carries her id
    left = list(
        Event.objects.order_by("id").values_list("type", "user_id", "anonymous_id", "previous_id")
    )
    assert left == [
        ("track", "quinn", "", ""),
        ("alias", "quinn", "", ""),
        ("track", "quinn", "dev-q", ""),
    ]
    request.refresh_from_db()
    assert request.erasure_summary["counts"]["ids_scrubbed"] == 2


def test_an_erasure_saved_in_the_old_order_of_steps_starts_again(ivy: Profile) -> None:
    # given: an erasure saved before the steps were reordered, at "hooks" (then the
    # second step, before events; now the sixth)
    request = _started()
    DataSubjectRequest.objects.filter(pk=request.pk).update(
        work_state={"step": "hooks", "counts": {}}
    )
    # when
    assert erasure_run(request_id=request.id) is True
    # then nothing was skipped
    assert not Profile.objects.filter(pk=ivy.pk).exists()
    assert Event.objects.count() == 0


def test_an_eager_erasure_task_waiting_for_a_hook_returns_instead_of_looping(
    ivy: Profile, registered: Any, settings: Any
) -> None:
    from apps.consent import tasks

    # given: tasks run in-process (the quickstart), and a destination that is down
    settings.CDP = {**settings.CDP, "ERASURE_HOOK_RETRY_DELAYS": [60, 600]}
    calls: list[int] = []

    def down(identifiers: Any) -> str:
        calls.append(1)
        raise ConnectionError("destination down")

    registered("hook", "down", down)
    request = _started()
    # when
    result = tasks.erasure_run.delay(str(request.id)).get()
    # then: one attempt, and the request waits for the next one (the sweep or an
    # admin picks it up), instead of the task calling itself without end
    assert result is False
    assert calls == [1]
    request.refresh_from_db()
    assert request.status == "in_progress"
    assert "a deletion hook is retried at" in request.progress_note


def test_a_profile_merged_into_hers_meanwhile_leaves_no_refused_payload_naming_it(
    ivy: Profile, post_events: Any
) -> None:
    # given: a device of hers not linked yet, and a refused event that names it
    from apps.events.models import RejectedEvent
    from apps.identity.services import profile_merge

    post_events("/v1/page", {"anonymousId": "ivy-tablet", "name": "Home"})
    post_events("/v1/track", {"anonymousId": "ivy-tablet", "messageId": "no-name"})
    assert RejectedEvent.objects.filter(payload__contains="ivy-tablet").exists()
    tablet = profile_get_by_external_id(external_id="anonymous_id:ivy-tablet")
    assert tablet is not None
    request = _started()
    # when: the erasure is past its refused-payloads step, then the tablet is merged in
    for _ in range(20):
        if DataSubjectRequest.objects.get(pk=request.id).work_state.get("step") == "records":
            break
        assert erasure_run(request_id=request.id, max_steps=1) is False
    assert DataSubjectRequest.objects.get(pk=request.id).work_state["step"] == "records"
    profile_merge(profile_ids=(ivy.id, tablet.id), reason="admin", force=True)
    assert erasure_run(request_id=request.id) is True
    # then: the refused payload that named the tablet is gone too
    assert not RejectedEvent.objects.filter(payload__contains="ivy-tablet").exists()

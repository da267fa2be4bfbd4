"""Processing after commit, with a real Celery worker and a real broker outage.

The worker consumes from CELERY_BROKER_URL: Redis in CI, Celery's in-memory
transport on a bare machine. Either way a real worker thread takes the task off the
queue; nothing about the queue is mocked.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.test import Client, override_settings

from apps.events.auth import source_create
from apps.events.models import Event
from apps.events.tasks import events_process_pending
from apps.identity.selectors import profile_get_by_external_id
from cdp.celery import app as celery_app

pytestmark = pytest.mark.django_db(transaction=True)


def _wait_until(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _post(client: Client, path: str, body: str, key: str) -> dict:  # type: ignore[type-arg]
    response = client.post(
        path, data=body, content_type="text/plain", QUERY_STRING=f"writeKey={key}"
    )
    assert response.status_code == 200
    return response.json()


def test_worker_consumes_processing_task_from_broker(not_eager: None) -> None:
    # given a source and a running worker consuming from the configured broker
    _, source_key = source_create(name="App", write_key="wk_worker")
    client = Client()
    with start_worker(
        celery_app, perform_ping_check=False, pool="solo", concurrency=1, loglevel="WARNING"
    ):
        # when a batch is accepted
        body = (
            '{"batch": ['
            '{"type": "identify", "anonymousId": "anon-w", "userId": "user-w",'
            ' "traits": {"email": "Worker@Example.com"}},'
            '{"type": "track", "anonymousId": "anon-w", "event": "Cart Viewed"}]}'
        )
        assert _post(client, "/v1/batch", body, source_key) == {"success": True}
        # then the worker, not the request, resolves the profile
        assert _wait_until(lambda: not Event.objects.filter(processed_at__isnull=True).exists())
    profile = profile_get_by_external_id(external_id="email:worker@example.com")
    assert profile is not None
    assert set(Event.objects.values_list("profile_id", flat=True)) == {profile.id}
    assert profile_get_by_external_id(external_id="anonymous_id:anon-w") == profile


def test_broker_outage_delays_processing_and_loses_nothing(
    not_eager: None, broker_at: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # given a broker that is down (nothing listens on port 9)
    _, source_key = source_create(name="App", write_key="wk_outage")
    client = Client()
    with broker_at("redis://127.0.0.1:9/0"):
        # when an event arrives
        started = time.monotonic()
        result = _post(
            client,
            "/v1/track",
            '{"userId": "u-outage", "event": "Order Completed"}',
            source_key,
        )
        elapsed = time.monotonic() - started
    # then the client still gets its 200 promptly and the event is stored, unprocessed
    assert result == {"success": True}
    assert elapsed < 10
    assert "could not enqueue processing of 1 events" in caplog.text
    event = Event.objects.get()
    assert event.processed_at is None and event.profile_id is None

    # when the broker is back and the periodic sweep runs
    with override_settings(CDP={**_cdp(), "PENDING_SWEEP_AFTER_SECONDS": 0}):
        processed = events_process_pending.apply().get()

    # then the event is processed as if nothing had happened
    assert processed == 1
    event.refresh_from_db()
    assert event.processed_at is not None
    assert profile_get_by_external_id(external_id="user_id:u-outage").id == event.profile_id


def _cdp() -> dict:  # type: ignore[type-arg]
    from django.conf import settings

    return dict(settings.CDP)


def test_a_web_process_hands_its_events_to_the_worker_together(not_eager: None) -> None:
    from apps.events.enqueue import coalescer

    # given ids gathered for 200 ms per web process, and a running worker
    _, source_key = source_create(name="App", write_key="wk_gather")
    client = Client()
    published_before = coalescer.tasks_published
    with (
        override_settings(CDP={**_cdp(), "PROCESS_COALESCE_MS": 200}),
        start_worker(
            celery_app, perform_ping_check=False, pool="solo", concurrency=1, loglevel="WARNING"
        ),
    ):
        # when ten single events arrive one after another
        for i in range(10):
            body = f'{{"userId": "u-{i % 3}", "event": "Viewed", "messageId": "g{i}"}}'
            assert _post(client, "/v1/track", body, source_key) == {"success": True}
        # then they are all processed by the worker, from fewer tasks than requests
        assert _wait_until(
            lambda: (
                Event.objects.count() == 10
                and not Event.objects.filter(processed_at__isnull=True).exists()
            )
        )
    tasks = coalescer.tasks_published - published_before
    assert 1 <= tasks < 10
    for i in range(3):
        profile = profile_get_by_external_id(external_id=f"user_id:u-{i}")
        assert profile is not None
        assert Event.objects.filter(user_id=f"u-{i}", profile=profile).count() == len(
            range(i, 10, 3)
        )

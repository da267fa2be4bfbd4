from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.consent.services.retention import retention_purge
from apps.events.models import Event, RejectedEvent

pytestmark = pytest.mark.django_db


def test_old_events_and_refused_payloads_are_purged_in_batches(
    post_events: Any, settings: Any
) -> None:
    # given: 7 events, 5 of them received long ago, and an old refused payload
    post_events(
        "/v1/batch",
        {"batch": [{"type": "track", "userId": f"u{i}", "event": "E"} for i in range(7)] + [{}]},
    )
    old = timezone.now() - timedelta(days=800)
    ids = list(Event.objects.order_by("id").values_list("id", flat=True))
    Event.objects.filter(id__in=ids[:5]).update(received_at=old)
    RejectedEvent.objects.update(received_at=timezone.now() - timedelta(days=31))
    settings.CDP = {
        **settings.CDP,
        "EVENT_RETENTION_DAYS": 730,
        "REJECTED_EVENT_RETENTION_DAYS": 30,
    }
    # when
    counts = retention_purge(batch_size=2)
    # then
    assert counts == {"events": 5, "rejected_events": 1}
    assert list(Event.objects.order_by("id").values_list("id", flat=True)) == ids[5:]
    assert RejectedEvent.objects.count() == 0


def test_zero_keeps_forever(post_events: Any, settings: Any) -> None:
    post_events("/v1/track", {"userId": "u", "event": "E"})
    Event.objects.update(received_at=timezone.now() - timedelta(days=5000))
    settings.CDP = {**settings.CDP, "EVENT_RETENTION_DAYS": 0}
    assert retention_purge()["events"] == 0
    assert Event.objects.count() == 1

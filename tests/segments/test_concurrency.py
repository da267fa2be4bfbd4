"""Segments under concurrency, with real connections and a real worker:

1. A reader on its own connection, reading members over and over while a refresh
   swaps a new version in, only ever sees the old members or the new ones.
2. A window that expires with no new event is swept by the recheck task run by a
   real Celery worker consuming the configured broker.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import orjson
import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection, connections
from django.test import Client
from django.utils import timezone

from apps.events.auth import source_create
from apps.identity.models import Profile
from apps.segments import tasks
from apps.segments.memberships import segment_refresh, segment_save
from apps.segments.models import Membership, MembershipChange, MembershipRecheck
from cdp.celery import app as celery_app

pytestmark = pytest.mark.django_db(transaction=True)

PRO = {"type": "trait", "path": "plan", "op": "equals", "value": "pro"}


def _members(segment_id: int) -> frozenset[uuid.UUID]:
    return frozenset(
        Membership.objects.filter(segment_id=segment_id, exited_at__isnull=True).values_list(
            "profile_id", flat=True
        )
    )


def test_a_reader_sees_the_old_members_or_the_new_never_a_mix() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite writes one transaction at a time: no reader runs meanwhile")
    # given 3,000 profiles, the first half on the pro plan, and the segment refreshed
    n = 3000
    profiles = Profile.objects.bulk_create(
        Profile(traits={"plan": "pro" if i < n // 2 else "free"}) for i in range(n)
    )
    segment = segment_save(key="pro", name="Pro", condition=PRO)
    old = _members(segment.pk)
    assert len(old) == n // 2
    # and then the plans swap, so that the next refresh exits one half and enters the other
    ids = [p.pk for p in profiles]
    Profile.objects.filter(pk__in=ids[: n // 2]).update(traits={"plan": "free"})
    Profile.objects.filter(pk__in=ids[n // 2 :]).update(traits={"plan": "pro"})
    new = frozenset(ids[n // 2 :])

    seen: list[frozenset[uuid.UUID]] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                seen.append(_members(segment.pk))
        finally:
            connections.close_all()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        while len(seen) < 3:  # the reader is reading before the refresh begins
            time.sleep(0.01)
        # when the refresh swaps the new version in
        record = segment_refresh(segment)
        time.sleep(0.2)
    finally:
        stop.set()
        reader.join()

    # then every read saw one whole version, and both versions were seen
    assert record.entered == n // 2 and record.exited == n // 2
    assert {s for s in seen} <= {old, new}
    assert seen[0] == old and seen[-1] == new
    # and the outbox holds exactly the swap's exits and entries
    version = MembershipChange.objects.filter(segment=segment, version=record.version)
    assert version.filter(kind="exited").count() == n // 2
    assert version.filter(kind="entered").count() == n // 2


def test_a_real_worker_sweeps_an_expired_window(not_eager: None) -> None:
    # given a segment of two views within an hour, and a running worker
    _, source_key = source_create(name="App", write_key="wk_recheck")
    segment = segment_save(
        key="viewers",
        name="Viewers",
        condition={
            "type": "performed",
            "event": "Product Viewed",
            "times": 2,
            "within_seconds": 3600,
        },
    )
    now = timezone.now()
    # the older of her two views leaves the hour in three seconds
    body = orjson.dumps(
        {
            "batch": [
                {
                    "type": "track",
                    "event": "Product Viewed",
                    "userId": "eve",
                    "messageId": f"eve-{i}",
                    "timestamp": (now - timedelta(seconds=s)).isoformat(),
                }
                for i, s in enumerate((3597, 60))
            ]
        }
    )
    client = Client()
    with start_worker(
        celery_app, perform_ping_check=False, pool="solo", concurrency=1, loglevel="WARNING"
    ):
        response = client.post(
            "/v1/batch",
            data=body,
            content_type="application/json",
            QUERY_STRING=f"writeKey={source_key}",
        )
        assert response.status_code == 200
        current = Membership.objects.filter(segment=segment, exited_at__isnull=True)
        _wait(current.exists, "the worker did not put her in the segment")
        recheck = MembershipRecheck.objects.get(segment=segment)
        assert recheck.due_at <= now + timedelta(seconds=4)

        # when the recheck is due and beat's task runs on the worker
        time.sleep(max(0.0, (recheck.due_at - timezone.now()).total_seconds()) + 0.05)
        tasks.segments_recheck_due.delay()

        # then she is out, with the exit in the outbox, and nothing is left due
        _wait(lambda: not current.exists(), "the worker did not sweep the expired window")
    row = Membership.objects.get(segment=segment)
    assert row.exit_reason["source"] == "recheck"
    assert MembershipChange.objects.filter(segment=segment, kind="exited").count() == 1
    assert not MembershipRecheck.objects.filter(segment=segment).exists()


def _wait(done: Callable[[], bool], message: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)

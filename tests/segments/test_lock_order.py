"""Writers of memberships racing each other on real connections (threads) on
PostgreSQL: every writer takes its locks in one order (erasure lock, segment
advisory lock, segment row), so two of them at once both finish, none is
chosen as a deadlock victim. Each race is arranged so that the second writer
has taken its first lock and waits while the first goes on to its next one:
before the order was one, each of these deadlocked every time."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from django.db import connection, transaction

from apps.identity.models import Profile
from apps.segments import memberships as ms
from apps.segments.memberships import profiles_evaluate, segment_refresh, segment_save
from apps.segments.models import Membership, Segment
from apps.segments.written import (
    Move,
    WrittenMembers,
    uuids_pack,
    written_members_move,
    written_segment_create,
    written_segments_hold,
    written_segments_swap,
)

from .threads import in_thread

pytestmark = pytest.mark.django_db(transaction=True)
PRO = {"type": "trait", "path": "plan", "op": "equals", "value": "pro"}
ROUNDS = 3  # each round hit the deadlock before the fix


@pytest.fixture(autouse=True)
def _postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite writes one transaction at a time")


def _waiting_for_a_lock(timeout: float = 10.0) -> None:
    """Until some other connection of this database waits for a lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0]:
                return
        time.sleep(0.02)
    raise AssertionError("the second writer never waited for a lock")


def _failures(*outs: list[Any]) -> list[str]:
    return [repr(o[0]) for o in outs if not o or isinstance(o[0], BaseException)]


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_a_cluster_move_and_a_cluster_swap_at_once_both_finish(round_: int) -> None:
    ids = [p.pk for p in Profile.objects.bulk_create(Profile() for _ in range(50))]
    segment = written_segment_create(key=f"c{round_}", name="C")
    members = WrittenMembers(segment.pk, uuids_pack(ids), np.linspace(0, 1, 50), {"text": "x"})
    written_segments_swap(members=[members])
    held, go = threading.Event(), threading.Event()

    def assign() -> Any:  # what clustering's assignment does: hold, read features, move
        with transaction.atomic():
            written_segments_hold([segment.pk])
            held.set()
            assert go.wait(20)
            return written_members_move(
                segment_ids=[segment.pk], moves={ids[0]: Move(None, {}, {"text": "left"})}
            )

    moved: list[Any] = []
    swapped: list[Any] = []
    mover = in_thread(assign, moved)
    assert held.wait(20)
    swapper = in_thread(lambda: written_segments_swap(members=[members]), swapped)
    _waiting_for_a_lock()  # the swap waits behind the move's shared advisory lock
    go.set()
    mover.join(30)
    swapper.join(30)
    assert not _failures(moved, swapped), _failures(moved, swapped)
    # The swap came last: everyone is in again.
    assert Membership.objects.filter(segment=segment, exited_at__isnull=True).count() == 50


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_a_realtime_write_and_a_refresh_at_once_both_finish(monkeypatch, round_: int) -> None:
    profile = Profile.objects.create(traits={"plan": "free"})
    segment = segment_save(key=f"pro{round_}", name="Pro", condition=PRO)
    Profile.objects.filter(pk=profile.pk).update(traits={"plan": "pro"})
    inside, go = threading.Event(), threading.Event()
    original = ms._segments_kept

    def pausing(segment_ids: Any) -> set[int]:
        inside.set()
        assert go.wait(20)
        return original(segment_ids)

    monkeypatch.setattr(ms, "_segments_kept", pausing)

    def realtime() -> Any:
        with transaction.atomic():
            return profiles_evaluate([profile.pk])

    written: list[Any] = []
    refreshed: list[Any] = []
    writer = in_thread(realtime, written)
    assert inside.wait(20)  # holds the advisory lock shared, about to lock the row
    refresher = in_thread(lambda: segment_refresh(Segment.objects.get(pk=segment.pk)), refreshed)
    _waiting_for_a_lock()
    go.set()
    writer.join(30)
    refresher.join(30)
    assert not _failures(written, refreshed), _failures(written, refreshed)
    assert list(
        Membership.objects.filter(segment=segment, exited_at__isnull=True).values_list(
            "profile_id", flat=True
        )
    ) == [profile.pk]

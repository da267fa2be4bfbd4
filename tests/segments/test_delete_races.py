"""Deleting a segment, or erasing a profile, while memberships are written, with
real connections (threads) on PostgreSQL: memberships and the outbox have no
foreign-key constraint to their segment or their profile (migrations 0007 and
0008), so these show that the locks that stand in for them leave no membership
or outbox row of a deleted segment or an erased profile, whichever comes first."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.db import connection, transaction
from django.utils import timezone

from apps.events.auth import source_create
from apps.events.models import Event
from apps.identity.models import Profile
from apps.identity.services.erase import person_erase
from apps.segments import memberships, written
from apps.segments.memberships import (
    memberships_erase,
    segment_delete,
    segment_refresh,
    segment_save,
)
from apps.segments.models import Membership, MembershipChange, MembershipRecheck, Segment
from apps.segments.written import (
    Move,
    WrittenMembers,
    uuids_pack,
    written_members_move,
    written_segment_create,
    written_segments_swap,
)

from .threads import in_thread

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite writes one transaction at a time (and keeps the constraint)")


def _segment_and_members(n: int) -> tuple[Segment, WrittenMembers, list[uuid.UUID]]:
    profiles = Profile.objects.bulk_create(Profile() for _ in range(n))
    ids = [p.pk for p in profiles]
    segment = written_segment_create(key="persona-1", name="Persona 1")
    members = WrittenMembers(
        segment_id=segment.pk,
        profile_ids=uuids_pack(ids),
        distances=np.linspace(0, 1, n),
        reason={"source": "cluster", "text": "cluster 0 of run 1: nearest centroid"},
    )
    return segment, members, ids


def _into(segment: Segment) -> Move:
    return Move(segment.pk, {"text": "nearest centroid"}, {"text": "moved"})


def _left_of(segment_id: int) -> tuple[int, int]:
    return (
        Membership.objects.filter(segment_id=segment_id).count(),
        MembershipChange.objects.filter(segment_id=segment_id).count(),
    )


def test_a_delete_during_a_swap_waits_for_it_and_takes_its_rows(monkeypatch) -> None:
    # given a swap of 2,000 members that has written them all and not committed
    segment, members, _ = _segment_and_members(2000)
    inside, release = threading.Event(), threading.Event()
    original = written._segment_written

    def pausing(segment_id: int, update: Any) -> None:
        original(segment_id, update)
        inside.set()
        release.wait(20)

    monkeypatch.setattr(written, "_segment_written", pausing)
    swapped: list[Any] = []
    swapper = in_thread(lambda: written_segments_swap(members=[members]), swapped)
    assert inside.wait(20)

    # when the segment is deleted meanwhile, on another connection
    deleted: list[Any] = []
    deleter = in_thread(lambda: segment_delete(Segment.objects.get(pk=segment.pk)), deleted)
    deleter.join(1.0)
    waited = deleter.is_alive()
    release.set()
    swapper.join(20)
    deleter.join(20)

    # then the delete waited for the swap, both succeeded, and nothing of the
    # segment is left: not its memberships, not its outbox rows
    assert waited
    assert len(swapped) == 1 and swapped[0].entered == {segment.pk: 2000}, swapped
    assert deleted == [None], deleted
    assert not Segment.objects.filter(pk=segment.pk).exists()
    assert _left_of(segment.pk) == (0, 0)


def test_a_swap_after_a_delete_began_writes_nothing() -> None:
    # given a segment with members, being deleted by a transaction still open
    segment, members, _ = _segment_and_members(500)
    written_segments_swap(members=[members])
    assert _left_of(segment.pk) == (500, 500)
    holding, release = threading.Event(), threading.Event()

    def delete() -> None:
        with transaction.atomic():
            segment_delete(Segment.objects.get(pk=segment.pk))
            holding.set()
            release.wait(20)

    deleted: list[Any] = []
    deleter = in_thread(delete, deleted)
    assert holding.wait(20)

    # when a swap of it starts meanwhile
    swapped: list[Any] = []
    swapper = in_thread(lambda: written_segments_swap(members=[members]), swapped)
    swapper.join(1.0)
    waited = swapper.is_alive()
    release.set()
    deleter.join(20)
    swapper.join(20)

    # then the swap waited, found the segment gone and wrote nothing
    assert waited
    assert deleted == [None], deleted
    assert len(swapped) == 1 and isinstance(swapped[0], ValueError), swapped
    assert "no such segments" in str(swapped[0])
    assert _left_of(segment.pk) == (0, 0)


def test_a_move_into_a_segment_being_deleted_writes_nothing() -> None:
    # given a segment being deleted by a transaction still open
    segment, _, ids = _segment_and_members(3)
    holding, release = threading.Event(), threading.Event()

    def delete() -> None:
        with transaction.atomic():
            segment_delete(Segment.objects.get(pk=segment.pk))
            holding.set()
            release.wait(20)

    deleted: list[Any] = []
    deleter = in_thread(delete, deleted)
    assert holding.wait(20)

    # when the assignment stage moves profiles into it meanwhile
    def move() -> tuple[int, int]:
        with transaction.atomic():
            return written_members_move(
                segment_ids=[segment.pk],
                moves={pid: _into(segment) for pid in ids},
            )

    moved: list[Any] = []
    mover = in_thread(move, moved)
    mover.join(1.0)
    waited = mover.is_alive()
    release.set()
    deleter.join(20)
    mover.join(20)

    # then the move waited for the delete and wrote nothing for the gone segment
    assert waited
    assert deleted == [None], deleted
    assert moved == [(0, 0)], moved
    assert _left_of(segment.pk) == (0, 0)


def test_a_delete_during_a_move_waits_for_it_and_takes_its_rows() -> None:
    # given a move into a segment, written and not committed
    segment, _, ids = _segment_and_members(3)
    inside, release = threading.Event(), threading.Event()

    def move() -> tuple[int, int]:
        with transaction.atomic():
            done = written_members_move(
                segment_ids=[segment.pk],
                moves={pid: _into(segment) for pid in ids},
            )
            inside.set()
            release.wait(20)
            return done

    moved: list[Any] = []
    mover = in_thread(move, moved)
    assert inside.wait(20)

    # when the segment is deleted meanwhile
    deleted: list[Any] = []
    deleter = in_thread(lambda: segment_delete(Segment.objects.get(pk=segment.pk)), deleted)
    deleter.join(1.0)
    waited = deleter.is_alive()
    release.set()
    mover.join(20)
    deleter.join(20)

    # then the delete waited for the move and took its rows with the segment
    assert waited
    assert moved == [(3, 0)], moved
    assert deleted == [None], deleted
    assert _left_of(segment.pk) == (0, 0)


def _erase(
    ids: list[uuid.UUID],
    holding: threading.Event | None = None,
    release: threading.Event | None = None,
) -> None:
    """Erasure's last pass as consent runs it: the memberships eraser, then the
    profiles, in one transaction (held open between ``holding`` and ``release``)."""
    with transaction.atomic():
        memberships_erase(ids)
        person_erase(profile_ids=ids, values=[])
        if holding is not None and release is not None:
            holding.set()
            release.wait(20)


def _rows_of(ids: list[uuid.UUID]) -> tuple[int, int]:
    return (
        Membership.objects.filter(profile_id__in=ids).count(),
        MembershipChange.objects.filter(profile_id__in=ids).count(),
    )


def test_an_erasure_during_a_swap_waits_for_it_and_deletes_its_rows(monkeypatch) -> None:
    # given a swap of 1,000 members that has written them all and not committed
    segment, members, ids = _segment_and_members(1000)
    inside, release = threading.Event(), threading.Event()
    original = written._segment_written

    def pausing(segment_id: int, update: Any) -> None:
        original(segment_id, update)
        inside.set()
        release.wait(20)

    monkeypatch.setattr(written, "_segment_written", pausing)
    swapped: list[Any] = []
    swapper = in_thread(lambda: written_segments_swap(members=[members]), swapped)
    assert inside.wait(20)

    # when ten of its profiles are erased meanwhile
    gone = ids[:10]
    erased: list[Any] = []
    eraser = in_thread(lambda: _erase(gone), erased)
    eraser.join(1.0)
    waited = eraser.is_alive()
    release.set()
    swapper.join(20)
    eraser.join(20)

    # then the erasure waited for the swap and left no row of them; the others
    # are members
    assert waited
    assert len(swapped) == 1 and swapped[0].entered == {segment.pk: 1000}, swapped
    assert erased == [None], erased
    assert not Profile.objects.filter(pk__in=gone).exists()
    assert _rows_of(gone) == (0, 0)
    assert _left_of(segment.pk) == (990, 990)


@pytest.mark.parametrize("staged", [False, True], ids=["copied", "staged in chunks"])
def test_a_swap_after_an_erasure_began_writes_nothing_of_her(staged: bool) -> None:
    # given profiles, ten of them being erased by a transaction still open
    segment, members, ids = _segment_and_members(1000)
    token = 424242
    if staged:
        written.written_stage_chunk(
            token=token,
            chunk=0,
            slots=np.zeros(len(ids), dtype=np.int64),
            profile_ids=members.profile_ids,
            distances=members.distances,
        )
        members.slot = 0
    gone = ids[:10]
    holding, release = threading.Event(), threading.Event()
    erased: list[Any] = []
    eraser = in_thread(lambda: _erase(gone, holding, release), erased)
    assert holding.wait(20)

    # when a swap naming them starts meanwhile
    def swap() -> Any:
        if staged:
            return written_segments_swap(members=[members], staged=token, expected=len(ids))
        return written_segments_swap(members=[members])

    swapped: list[Any] = []
    swapper = in_thread(swap, swapped)
    swapper.join(1.0)
    waited = swapper.is_alive()
    release.set()
    eraser.join(20)
    swapper.join(20)

    # then the swap waited, and wrote the others only
    assert waited
    assert erased == [None], erased
    assert len(swapped) == 1 and swapped[0].entered == {segment.pk: 990}, swapped
    assert swapped[0].skipped == 10
    assert _rows_of(gone) == (0, 0)
    assert _left_of(segment.pk) == (990, 990)


def test_a_refresh_whose_staged_profile_is_erased_before_its_swap_commits(monkeypatch) -> None:
    # given a windowed rule that stages a member with a recheck row (the recheck
    # table keeps its profile foreign key)
    source, _ = source_create(name="App")
    profile, other = Profile.objects.create(), Profile.objects.create()
    now = timezone.now()
    for n, (who, ago) in enumerate([(p, s) for p in (profile, other) for s in (3000, 60)]):
        Event.objects.create(
            source=source,
            message_id=f"m{n}",
            type="track",
            event="Product Viewed",
            timestamp=now - timedelta(seconds=ago),
            received_at=now,
            profile=who,
            processed_at=now,
        )
    segment = segment_save(
        key="viewers",
        name="Viewers",
        condition={
            "type": "performed",
            "event": "Product Viewed",
            "times": 2,
            "within_seconds": 3600,
        },
        refresh=False,
    )
    original = memberships._erasure_lock

    def erase_first(*, exclusive: bool) -> None:
        if not exclusive:  # staged, not yet swapped: an erasure commits in between
            erased: list[Any] = []
            eraser = in_thread(lambda: _erase([profile.pk]), erased)
            eraser.join(20)
            assert erased == [None], erased
        original(exclusive=exclusive)

    monkeypatch.setattr(memberships, "_erasure_lock", erase_first)
    # when the refresh swaps
    record = segment_refresh(segment)
    # then it commits, with the other profile in and nothing of the erased one
    assert record.entered == 1
    assert list(
        Membership.objects.filter(segment=segment).values_list("profile_id", flat=True)
    ) == [other.pk]
    assert list(MembershipRecheck.objects.values_list("profile_id", flat=True)) == [other.pk]
    assert _rows_of([profile.pk]) == (0, 0)


def test_an_erasure_and_a_delete_of_her_segment_at_once_both_finish(monkeypatch) -> None:
    # given a segment of 20 whose delete has locked it and is about to collect its rows
    people = Profile.objects.bulk_create(Profile(traits={"plan": "pro"}) for _ in range(20))
    segment = segment_save(
        key="pro",
        name="Pro",
        condition={"type": "trait", "path": "plan", "op": "equals", "value": "pro"},
    )
    assert Membership.objects.filter(segment=segment).count() == 20
    collecting, go = threading.Event(), threading.Event()
    original = Segment.delete

    def slow_delete(self: Segment, *args: Any, **kwargs: Any) -> Any:
        collecting.set()  # a large segment's collection takes a while
        assert go.wait(20)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Segment, "delete", slow_delete)
    deleted: list[Any] = []
    erased: list[Any] = []
    deleter = in_thread(lambda: segment_delete(Segment.objects.get(pk=segment.pk)), deleted)
    assert collecting.wait(20)
    # when one of them is erased meanwhile
    eraser = in_thread(lambda: _erase([people[0].pk]), erased)
    _waiting_for_a_lock()
    go.set()
    deleter.join(30)
    eraser.join(30)
    # then both finish: no deadlock, nothing left of the segment or of her
    assert deleted == [None] and erased == [None], (deleted, erased)
    assert not Segment.objects.filter(pk=segment.pk).exists()
    assert Membership.objects.filter(segment_id=segment.pk).count() == 0
    assert _rows_of([people[0].pk]) == (0, 0)


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

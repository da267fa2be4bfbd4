"""The staged swap of written segments (apps/segments/written.py): what the
chunks staged is swapped in only when all of it is there, and without the
profiles erased or merged since it was staged."""

from __future__ import annotations

import numpy as np
import pytest

from apps.identity.models import Profile
from apps.segments.models import Membership, WrittenStaging
from apps.segments.written import (
    StagedIncomplete,
    WrittenMembers,
    uuids_pack,
    written_segment_create,
    written_segments_swap,
    written_stage_chunk,
)


def _members(segment_id: int, slot: int | None) -> WrittenMembers:
    return WrittenMembers(
        segment_id=segment_id,
        profile_ids=np.empty(0, dtype="V16"),
        distances=np.empty(0),
        reason={"source": "cluster"},
        slot=slot,
    )


def _staged(token: int, profiles: list[Profile]) -> int:
    return written_stage_chunk(
        token=token,
        chunk=0,
        slots=np.zeros(len(profiles), dtype=np.int64),
        profile_ids=uuids_pack(p.pk for p in profiles),
        distances=np.arange(len(profiles), dtype=np.float64),
    )


@pytest.mark.django_db
def test_a_staged_swap_with_rows_missing_swaps_nothing() -> None:
    # given a segment with members, and a new set staged, one row of it lost
    segment = written_segment_create(key="c0", name="C0")
    old = [Profile.objects.create() for _ in range(3)]
    assert _staged(1, old) == 3
    written_segments_swap(members=[_members(segment.pk, 0)], staged=1, expected=3)
    new = [Profile.objects.create() for _ in range(4)]
    assert _staged(2, new) == 4
    WrittenStaging.objects.filter(token=2, profile_id=new[0].pk).delete()

    # when it is swapped in, expecting the four rows staged
    with pytest.raises(StagedIncomplete, match="3 of the 4 memberships"):
        written_segments_swap(members=[_members(segment.pk, 0)], staged=2, expected=4)

    # then the old members stay
    current = set(
        Membership.objects.filter(segment=segment, exited_at__isnull=True).values_list(
            "profile_id", flat=True
        )
    )
    assert current == {p.pk for p in old}


@pytest.mark.django_db
def test_a_staged_swap_needs_a_slot_for_every_segment() -> None:
    a = written_segment_create(key="a", name="A")
    b = written_segment_create(key="b", name="B")
    for slots in ((0, None), (1, 1)):
        with pytest.raises(ValueError, match="slot"):
            written_segments_swap(
                members=[_members(a.pk, slots[0]), _members(b.pk, slots[1])], staged=1
            )


@pytest.mark.django_db(transaction=True)
def test_a_staged_swap_leaves_out_profiles_erased_or_merged_since() -> None:
    # given three profiles staged, then one erased and one merged into another
    segment = written_segment_create(key="c0", name="C0")
    kept, erased, merged = (Profile.objects.create() for _ in range(3))
    _staged(5, [kept, erased, merged])
    Profile.objects.filter(pk=erased.pk).delete()
    Profile.objects.filter(pk=merged.pk).update(merged_into=kept)

    # when the staged set is swapped in
    result = written_segments_swap(members=[_members(segment.pk, 0)], staged=5, expected=3)

    # then only the live profile is a member, and two were skipped
    assert result.skipped == 2
    assert result.sizes[segment.pk] == 1
    assert list(
        Membership.objects.filter(segment=segment, exited_at__isnull=True).values_list(
            "profile_id", flat=True
        )
    ) == [kept.pk]

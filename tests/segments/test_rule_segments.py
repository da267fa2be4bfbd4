"""Rule segments end to end: real-time entry through the pipeline, windows that
expire with no new event, batch refresh as a versioned swap, the outbox,
minimum size, merges, splits and erasure."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.identity.models import Identifier
from apps.segments.memberships import (
    profile_segment_keys,
    segment_refresh,
    segment_save,
    segments_recheck_due,
)
from apps.segments.models import Membership, MembershipChange, MembershipRecheck, Segment

pytestmark = pytest.mark.django_db

BROWSING_SHOES = {
    "type": "performed",
    "event": "Product Viewed",
    "where": [{"path": "properties.category", "op": "equals", "value": "shoes"}],
    "times": 3,
    "times_op": ">=",
    "within_seconds": 3600,
}


def _views(user: str, minutes_ago: list[float], category: str = "shoes") -> dict[str, Any]:
    now = timezone.now()
    return {
        "batch": [
            {
                "type": "track",
                "event": "Product Viewed",
                "userId": user,
                "messageId": f"{user}-{category}-{i}-{m}",
                "timestamp": (now - timedelta(minutes=m)).isoformat(),
                "properties": {"category": category},
            }
            for i, m in enumerate(minutes_ago)
        ]
    }


def _pid(user: str) -> Any:
    return Identifier.objects.get(type="user_id", value=user).profile_id


def test_the_third_view_in_an_hour_enters_at_once_and_the_window_expires_alone(post_events):
    segment = segment_save(key="browsing-shoes", name="Browsing shoes", condition=BROWSING_SHOES)
    assert post_events("/v1/batch", _views("ada", [50, 30])).status_code == 200
    assert profile_segment_keys(_pid("ada")) == []
    # the third view: in the segment when the request's processing is done
    assert post_events("/v1/batch", _views("ada", [1])).status_code == 200
    pid = _pid("ada")
    assert profile_segment_keys(pid) == ["browsing-shoes"]
    member = Membership.objects.get(segment=segment, profile_id=pid)
    [condition] = member.reason["conditions"]
    assert condition["held"] is True and condition["value"] == 3
    assert member.reason["source"] == "realtime"
    # the oldest of the three leaves the window 10 minutes from now: that is when
    # the sweep looks again, with no new event
    recheck = MembershipRecheck.objects.get(segment=segment, profile_id=pid)
    expected = timezone.now() + timedelta(minutes=10)
    assert abs((recheck.due_at - expected).total_seconds()) < 30
    assert segments_recheck_due(now=recheck.due_at - timedelta(seconds=1)) == 0
    assert segments_recheck_due(now=recheck.due_at + timedelta(seconds=1)) == 1
    assert profile_segment_keys(pid) == []
    member.refresh_from_db()
    assert member.exited_at is not None
    assert list(
        MembershipChange.objects.filter(segment=segment, profile_id=pid).values_list(
            "kind", "source"
        )
    ) == [("entered", "realtime"), ("exited", "recheck")]
    # two views are left in the window, which can only fall: nothing more to check
    assert not MembershipRecheck.objects.filter(profile_id=pid).exists()
    assert Segment.objects.get(pk=segment.pk).size == 0


def test_a_refresh_finds_what_real_time_found_and_swaps_a_new_version(post_events):
    post_events("/v1/batch", _views("bo", [40, 20, 5]))
    post_events("/v1/batch", _views("cy", [40, 20]))
    post_events("/v1/batch", _views("di", [40, 20, 5], category="bags"))
    segment = segment_save(key="browsing-shoes", name="Browsing shoes", condition=BROWSING_SHOES)
    assert segment.version == 1 and segment.size == 1
    [member] = Membership.objects.filter(segment=segment, exited_at__isnull=True)
    assert member.profile_id == _pid("bo")
    assert member.source == "refresh" and member.reason["conditions"][0]["value"] == 3
    assert MembershipRecheck.objects.filter(segment=segment, profile_id=_pid("bo")).exists()
    again = segment_refresh(segment)
    assert (again.version, again.entered, again.exited, again.size) == (2, 0, 0, 1)

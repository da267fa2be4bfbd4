"""Rule segments end to end: real-time entry through the pipeline, windows that
expire with no new event, batch refresh as a versioned swap, the outbox,
minimum size, merges, splits and erasure."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.consent.services.consent import consent_grant
from apps.consent.services.defaults import purposes_default_ensure
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


def test_a_merge_moves_memberships_to_the_survivor_and_a_split_re_evaluates_both(post_events):
    from apps.identity.services import profile_merge, profile_split

    segment_save(key="browsing-shoes", name="Browsing shoes", condition=BROWSING_SHOES)
    orders = {"type": "feature", "name": "orders_count", "op": "gte", "value": 1}
    segment_save(key="buyers", name="Buyers", condition=orders)
    # ann views shoes twice; her phone (anonymous) once more and buys
    post_events("/v1/batch", _views("ann", [30, 20]))
    post_events("/v1/batch", {"batch": [
        {"type": "track", "event": "Product Viewed", "anonymousId": "ann-phone",
         "messageId": "p1", "properties": {"category": "shoes"}},
        {"type": "track", "event": "Order Completed", "anonymousId": "ann-phone",
         "messageId": "p2", "properties": {"revenue": 20}},
    ]})  # fmt: skip
    ann = _pid("ann")
    phone = Identifier.objects.get(type="anonymous_id", value="ann-phone").profile_id
    assert profile_segment_keys(ann) == [] and profile_segment_keys(phone) == ["buyers"]

    # when merged: the survivor has three views and the order
    merged = profile_merge(profile_ids=(ann, phone), reason="admin")
    survivor = merged.survivor.pk if hasattr(merged, "survivor") else ann
    absorbed = phone if survivor == ann else ann
    assert profile_segment_keys(survivor) == ["browsing-shoes", "buyers"]
    assert profile_segment_keys(absorbed) == []
    # the absorbed id's exit is in the outbox, for exports that know it by that id
    assert MembershipChange.objects.filter(profile_id=absorbed, kind="exited").exists()

    # when split again: each is evaluated on its own events
    profile_split(profile_id=absorbed if absorbed == phone else phone)
    assert profile_segment_keys(ann) == []
    assert profile_segment_keys(phone) == ["buyers"]
    assert Segment.objects.get(key="buyers").size == 1


def test_erasure_leaves_no_membership_history_outbox_or_recheck_row(post_events):
    from apps.consent.services.dsr import dsr_create, dsr_transition
    from apps.consent.services.erasure import erasure_run, erasure_start

    segment = segment_save(key="browsing-shoes", name="Browsing shoes", condition=BROWSING_SHOES)
    post_events("/v1/batch", _views("dee", [30, 20, 10]))
    post_events("/v1/batch", _views("eve", [30, 20, 10]))
    dee = _pid("dee")
    segments_recheck_due(now=timezone.now() + timedelta(hours=2))  # dee and eve exit: history
    post_events("/v1/batch", _views("dee", [3, 2, 1]))  # and dee enters again
    assert Membership.objects.filter(profile_id=dee).count() == 2

    request = dsr_create(type="erasure", subject="user_id:dee")
    dsr_transition(request=request, status="verified")
    erasure_start(request=request)
    assert erasure_run(request_id=request.id) is True

    for model in (Membership, MembershipChange, MembershipRecheck):
        assert not model.objects.filter(profile_id=dee).exists()
    assert Membership.objects.filter(profile_id=_pid("eve")).exists()
    assert Segment.objects.get(pk=segment.pk).size == 0
    request.refresh_from_db()
    assert request.erasure_summary["counts"]["segment_memberships"] >= 4


def test_a_reader_never_sees_half_a_refresh(post_events, make_profile):
    # a refresh that swaps 40 members for 40 others is one transaction: the
    # outbox and the memberships move together, and the size is either before or after
    people = [make_profile(("user_id", f"u{i}"), traits={"tier": "a" if i < 40 else "b"})
              for i in range(80)]  # fmt: skip
    condition = {"type": "trait", "path": "tier", "op": "equals", "value": "a"}
    segment = segment_save(key="tier", name="Tier", condition=condition)
    assert segment.size == 40
    for p in people:
        p.traits = {"tier": "b" if p.traits["tier"] == "a" else "a"}
        p.save()
    record = segment_refresh(segment)
    assert (record.entered, record.exited, record.size, record.version) == (40, 40, 40, 2)
    current = set(
        Membership.objects.filter(segment=segment, exited_at__isnull=True).values_list(
            "profile_id", flat=True
        )
    )
    assert current == {p.pk for p in people[40:]}
    assert MembershipChange.objects.filter(segment=segment, version=2).count() == 80


def test_a_segment_below_its_minimum_size_is_not_activated(make_profile):
    for i in range(3):
        make_profile(("user_id", f"m{i}"), traits={"vip": True})
    condition = {"type": "trait", "path": "vip", "op": "equals", "value": True}
    segment = segment_save(key="vip", name="VIP", condition=condition, min_size=5)
    assert segment.size == 3 and not segment.activated
    make_profile(("user_id", "m3"), traits={"vip": True})
    make_profile(("user_id", "m4"), traits={"vip": True})
    segment_refresh(segment)
    assert segment.size == 5 and segment.activated


def test_a_consent_condition_selects_the_consenting_in_refresh_and_in_real_time(post_events):
    # given a consenting customer and one who never answered
    purposes_default_ensure()
    post_events("/v1/batch", _views("yes", [5]))
    post_events("/v1/batch", _views("no", [5]))
    consent_grant(profile_id=_pid("yes"), purpose="personalization", source="test")
    condition = {
        "type": "and",
        "children": [
            {"type": "consent", "purpose": "personalization"},
            {"type": "performed", "event": "Product Viewed", "within_seconds": 3600},
        ],
    }

    # when the segment is saved (a batch refresh: SQL on PostgreSQL)
    segment = segment_save(key="consenting-viewers", name="Consenting", condition=condition)

    # then only the consenting one is in, and the reason says the consent held
    members = Membership.objects.filter(segment=segment, exited_at__isnull=True)
    assert [m.profile_id for m in members] == [_pid("yes")]
    assert members[0].reason["conditions"][0]["held"] is True
    assert members[0].reason["conditions"][0]["value"] is True

    # when the other one consents and views again (real time)
    consent_grant(profile_id=_pid("no"), purpose="personalization", source="test")
    post_events("/v1/batch", _views("no", [1]))

    # then she is in too, with the same reason shape
    row = Membership.objects.get(segment=segment, profile_id=_pid("no"), exited_at__isnull=True)
    assert row.reason["conditions"][0] == {**members[0].reason["conditions"][0]}

"""Holdouts: deterministic buckets, their share, and their stability across a merge."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.identity.models import Profile
from apps.identity.services import profile_merge
from apps.personalization import services
from apps.personalization.decide import decide
from apps.personalization.exposures import exposures_flush
from apps.personalization.holdouts import holdout_bucket, holdout_key, is_held_out
from apps.personalization.models import Exposure, HoldoutKey, Placement
from apps.segments.models import Membership, Segment

from .conftest import members_add, variant


def test_bucket_is_posthogs_sha1_and_stable() -> None:
    # the first 15 hex digits of sha1("<rule>.<key>") over 0xFFFFFFFFFFFFFFF
    digest = hashlib.sha1(b"12.profile-1").hexdigest()
    assert holdout_bucket(12, "profile-1") == int(digest[:15], 16) / 0xFFFFFFFFFFFFFFF
    assert holdout_bucket(12, "profile-1") == holdout_bucket(12, "profile-1")
    assert holdout_bucket(12, "profile-1") != holdout_bucket(13, "profile-1")
    assert is_held_out(1, "x", 0) is False and is_held_out(1, "x", 100) is True


@settings(max_examples=25, deadline=None)
@given(rule_id=st.integers(min_value=1, max_value=10**9), percent=st.integers(0, 100))
def test_share_held_out_is_the_percentage(rule_id: int, percent: int) -> None:
    # given 4,000 profiles' keys, when bucketed for a rule with this percentage
    n = 4000
    held = sum(is_held_out(rule_id, f"00000000-0000-4000-8000-{i:012d}", percent) for i in range(n))
    # then the share held out is the percentage, within 4.5 standard deviations
    p = percent / 100
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs(held / n - p) <= 4.5 * sigma + 1e-9


@pytest.mark.django_db
def test_held_out_profile_gets_the_default(
    settings: Any, hero: Placement, make_segment: Any, make_profile: Callable[..., Profile]
) -> None:
    # (as in production: the mapping cached, exposures buffered)
    settings.CDP = {
        **settings.CDP,
        "DECIDE_MAPPING_CHECK_MS": 60_000,
        "DECIDE_EXPOSURE_FLUSH_MS": 600_000,
    }
    # given 400 members of a segment whose rule holds 25 % out
    profiles = [make_profile(("user_id", f"u{i}")) for i in range(400)]
    segment = make_segment("s", members=profiles)
    rule = services.rule_create(
        placement=hero, segment=segment, variant=variant("hero-shoes"), holdout_percent=25
    )
    # when each is decided twice
    first = [decide(profile_id=p.pk, placements=["home_hero"])["home_hero"] for p in profiles]
    again = [decide(profile_id=p.pk, placements=["home_hero"])["home_hero"] for p in profiles]
    # then the same ones are held out each time, they see the default with the rule
    # as the reason, and about a quarter are
    assert [d.holdout for d in first] == [d.holdout for d in again]
    held = [d for d in first if d.holdout]
    assert all(d.variant == "hero-default" and d.rule and d.rule.id == rule.id for d in held)
    assert all(d.variant == "hero-shoes" for d in first if not d.holdout)
    assert 0.25 - 4.5 * (0.25 * 0.75 / 400) ** 0.5 <= len(held) / 400 <= 0.25 + 0.1
    exposures_flush()
    # and the exposures say which group each was in, for the lift
    assert Exposure.objects.filter(rule=rule, holdout=True).count() == 2 * len(held)
    assert Exposure.objects.filter(rule=rule, holdout=False).count() == 2 * (400 - len(held))


@pytest.mark.django_db
def test_holdout_unchanged_by_a_merge(
    hero: Placement, make_segment: Any, make_profile: Callable[..., Profile]
) -> None:
    # given a 50 % holdout, and two profiles of one person that fall on either side
    segment = make_segment("s")
    rule = services.rule_create(
        placement=hero, segment=segment, variant=variant("hero-shoes"), holdout_percent=50
    )
    known = make_profile(("user_id", "ada"), ("email", "ada@example.com"))
    anon = next(
        p
        for i in range(200)
        if (p := make_profile(("anonymous_id", f"anon-{i}")))
        and is_held_out(rule.id, str(p.pk), 50) != is_held_out(rule.id, str(known.pk), 50)
    )
    members_add(segment, [known, anon])
    before = {
        p.pk: decide(profile_id=p.pk, placements=["home_hero"])["home_hero"].holdout
        for p in (known, anon)
    }
    assert before[known.pk] != before[anon.pk]
    # when they merge
    merge = profile_merge(profile_ids=(known.pk, anon.pk), reason="test")
    survivor = merge.survivor_id
    absorbed = anon.pk if survivor == known.pk else known.pk
    if not Membership.objects.filter(segment=segment, profile_id=survivor, exited_at=None).exists():
        members_add(segment, [Profile.objects.get(pk=survivor)])
    # then the survivor keeps its key (pinned) and so its group; the absorbed
    # profile's exposures moved to it
    assert holdout_key(survivor) == str(survivor)
    assert HoldoutKey.objects.filter(profile_id=survivor).exists()
    after = decide(profile_id=survivor, placements=["home_hero"])["home_hero"]
    assert after.holdout == before[survivor]
    assert not Exposure.objects.filter(profile_id=absorbed).exists()
    assert Exposure.objects.filter(profile_id=survivor).count() == 3
    assert Segment.objects.filter(pk=segment.pk).exists()


@pytest.mark.django_db
def test_pinned_key_wins_over_the_profile_id(
    hero: Placement, make_segment: Any, make_profile: Callable[..., Profile]
) -> None:
    # given a profile whose key was pinned to another value (an earlier merge)
    p = make_profile(("user_id", "x"))
    HoldoutKey.objects.create(profile=p, key="first-key")
    # then buckets hash the pinned key
    assert holdout_key(p.pk) == "first-key"

"""Splits (apps/identity/hooks.py ``split``): the profile split back out is a
person of its own again: its holdout groups are those it had before the merge,
and the exposures decided for it (or for profiles it had absorbed) go back to it,
while what was decided for the merged person after the merge stays."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from apps.identity.models import Profile
from apps.identity.services import profile_merge, profile_split
from apps.personalization import services
from apps.personalization.exposures import exposures_flush
from apps.personalization.holdouts import holdout_key, is_held_out
from apps.personalization.models import Exposure, Placement
from apps.segments.models import Membership, Segment

from .conftest import members_add, variant

pytestmark = pytest.mark.django_db


def _decide(client: Client, profile: str) -> dict[str, Any]:
    r = client.post(
        "/api/v1/decide",
        {"profile": profile, "placements": ["home_hero"]},
        content_type="application/json",
    )
    assert r.status_code == 200, r.content
    return r.json()["decisions"]["home_hero"]  # type: ignore[no-any-return]


def _member_again(segment: Segment, *profiles: Profile) -> None:
    # Cluster memberships are the clustering run's to write: after a merge or a
    # split the test puts each live profile in the segment itself, so that the
    # decision turns on the holdout alone.
    for p in profiles:
        if not Membership.objects.filter(segment=segment, profile=p, exited_at=None).exists():
            members_add(segment, [Profile.objects.get(pk=p.pk)])


def _exposures() -> Counter[tuple[Any, Any]]:
    return Counter(Exposure.objects.values_list("profile_id", "origin_profile_id"))


def test_a_split_profile_is_back_in_its_own_holdout_groups(
    writer: Client, hero: Placement, make_segment: Any, make_profile: Callable[..., Profile]
) -> None:
    # given a 50 % holdout and two profiles of one person on either side of it
    segment = make_segment("s")
    rule = services.rule_create(
        placement=hero, segment=segment, variant=variant("hero-shoes"), holdout_percent=50
    )
    known = make_profile(("user_id", "ada"), ("email", "ada@example.com"))
    for i in range(200):
        anon = make_profile(("anonymous_id", f"anon-{i}"))
        if is_held_out(rule.id, str(anon.pk), 50) != is_held_out(rule.id, str(known.pk), 50):
            break
    members_add(segment, [known, anon])
    anon_id = f"anonymous_id:anon-{i}"
    before = {"known": _decide(writer, "user_id:ada"), "anon": _decide(writer, anon_id)}
    assert before["known"]["holdout"] != before["anon"]["holdout"]

    # when they merge: one person, the survivor's key, so the anonymous id now
    # gets the survivor's group
    merge = profile_merge(profile_ids=(known.pk, anon.pk), reason="test")
    assert merge.survivor_id == known.pk
    _member_again(segment, known)
    assert _decide(writer, anon_id)["holdout"] == before["known"]["holdout"]
    assert _decide(writer, "user_id:ada")["holdout"] == before["known"]["holdout"]

    # when the anonymous profile is split back out
    profile_split(profile_id=anon.pk, note="not the same person")
    _member_again(segment, known, anon)

    # then each is in the group it was in before the merge, by its own key
    assert holdout_key(anon.pk) == str(anon.pk)
    assert holdout_key(known.pk) == str(known.pk)
    after = {"known": _decide(writer, "user_id:ada"), "anon": _decide(writer, anon_id)}
    assert after["anon"]["holdout"] == before["anon"]["holdout"]
    assert after["known"]["holdout"] == before["known"]["holdout"]
    assert after["anon"]["variant"] == before["anon"]["variant"]
    assert after["known"]["variant"] == before["known"]["variant"]


def test_exposures_decided_before_the_merge_go_back_with_the_split_profile(
    settings: Any, writer: Client, hero: Placement, make_profile: Callable[..., Profile]
) -> None:
    # given a known customer, an anonymous visitor who had earlier absorbed
    # another anonymous profile of hers, and decisions for each of the three
    known = make_profile(("user_id", "ada"), ("email", "ada@example.com"))
    anon = make_profile(("anonymous_id", "a-1"), ("email", "visitor@example.com"))
    older = make_profile(("anonymous_id", "a-0"))
    for profile, times in ((known, 2), (anon, 3), (older, 1)):
        for _ in range(times):
            _decide(writer, f"id:{profile.pk}")
    # and one more for the older profile that waits in the buffer across the merges
    settings.CDP = {**settings.CDP, "DECIDE_EXPOSURE_FLUSH_MS": 600_000}
    _decide(writer, "anonymous_id:a-0")
    settings.CDP = {**settings.CDP, "DECIDE_EXPOSURE_FLUSH_MS": 0}
    assert profile_merge(profile_ids=(anon.pk, older.pk), reason="test").survivor_id == anon.pk
    assert profile_merge(profile_ids=(known.pk, anon.pk), reason="test").survivor_id == known.pk
    exposures_flush()
    # every exposure is the survivor's now, each remembering whom it was for
    assert _exposures() == {
        (known.pk, None): 2,
        (known.pk, anon.pk): 3,
        (known.pk, older.pk): 2,
    }
    # and decisions after the merge, through either's identifiers, are the person's
    _decide(writer, "user_id:ada")
    _decide(writer, "anonymous_id:a-1")

    # when the visitor is split back out
    profile_split(profile_id=anon.pk)

    # then hers, and the older profile's she had absorbed, go back to her; the
    # customer keeps his own and those decided for the merged person
    assert _exposures() == {
        (known.pk, None): 4,
        (anon.pk, None): 3,
        (anon.pk, older.pk): 2,
    }

    # when the older profile is split out of the visitor too
    profile_split(profile_id=older.pk)

    # then its own go back to it
    assert _exposures() == {(known.pk, None): 4, (anon.pk, None): 3, (older.pk, None): 2}
    # and the rest of the exposure (placement, variant, rule, time) went unchanged
    assert set(Exposure.objects.values_list("placement_id", "variant_id", "rule_id")) == {
        (hero.pk, variant("hero-default").pk, None)
    }


def test_a_split_out_of_a_profile_merged_again_reads_the_live_holder(
    writer: Client, hero: Placement, make_profile: Callable[..., Profile]
) -> None:
    # given b merged into a, then a into c (c is the live holder of all of it)
    a = make_profile(("anonymous_id", "a"), ("email", "a@example.com"))
    b = make_profile(("anonymous_id", "b"))
    c = make_profile(("user_id", "c"))
    for profile in (a, b, c):
        _decide(writer, f"id:{profile.pk}")
    assert profile_merge(profile_ids=(a.pk, b.pk), reason="test").survivor_id == a.pk
    assert profile_merge(profile_ids=(a.pk, c.pk), reason="test").survivor_id == c.pk
    assert _exposures() == {(c.pk, None): 1, (c.pk, a.pk): 1, (c.pk, b.pk): 1}
    # when b is split out of a, while a is itself merged into c
    profile_split(profile_id=b.pk)
    # then b's exposure comes back to it from the live holder, the others stay there
    assert _exposures() == {(c.pk, None): 1, (c.pk, a.pk): 1, (b.pk, None): 1}

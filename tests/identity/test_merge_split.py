from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from apps.events.models import Event
from apps.identity.models import (
    Identifier,
    IdentifierTypeConfig,
    Profile,
    ProfileMerge,
    TraitMergeRule,
)
from apps.identity.services import (
    MergeRefused,
    MergeRequest,
    profile_merge,
    profile_merge_bulk,
    profile_split,
)

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 5, 1, 9, 0, tzinfo=UTC)


def _state(profile_id: Any) -> dict[str, Any]:
    """Everything a merge and split must give back, as plain values."""
    p = Profile.objects.get(pk=profile_id)
    return {
        "live": p.merged_into_id is None,
        "traits": p.traits,
        "trait_timestamps": p.trait_timestamps,
        "first_seen": p.first_seen,
        "last_seen": p.last_seen,
        "identifiers": sorted(
            Identifier.objects.filter(profile=p).values_list("type", "value", "raw_value")
        ),
        "events": sorted(Event.objects.filter(profile=p).values_list("message_id", flat=True)),
    }


@pytest.fixture
def two_people(post_events: Any) -> tuple[Any, Any]:
    """Two real profiles built from events: an older known customer and a newer visitor."""
    post_events(
        "/v1/batch",
        {
            "batch": [
                {
                    "type": "identify",
                    "messageId": "a1",
                    "userId": "ann",
                    "anonymousId": "laptop",
                    "traits": {"name": "Ann", "plan": "pro", "email": "ann@example.com"},
                    "timestamp": T0.isoformat(),
                },
                {
                    "type": "track",
                    "messageId": "a2",
                    "anonymousId": "laptop",
                    "event": "Order Completed",
                    "timestamp": (T0 + timedelta(hours=1)).isoformat(),
                },
                {
                    "type": "identify",
                    "messageId": "b1",
                    "anonymousId": "phone",
                    "traits": {"plan": "free", "city": "Oslo"},
                    "timestamp": (T0 + timedelta(days=2)).isoformat(),
                },
                {
                    "type": "page",
                    "messageId": "b2",
                    "anonymousId": "phone",
                    "name": "Home",
                    "timestamp": (T0 + timedelta(days=3)).isoformat(),
                },
            ]
        },
    )
    ann = Identifier.objects.get(type="user_id", value="ann").profile_id
    visitor = Identifier.objects.get(type="anonymous_id", value="phone").profile_id
    assert ann != visitor
    return ann, visitor


def test_merge_then_split_leaves_both_profiles_as_they_were(two_people: tuple[Any, Any]) -> None:
    # given
    ann, visitor = two_people
    before = {ann: _state(ann), visitor: _state(visitor)}
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")

    # when an admin merges them
    record = profile_merge(profile_ids=(visitor, ann), reason="admin", actor=admin)

    # then the older profile survives with everything
    assert (record.survivor_id, record.absorbed_id) == (ann, visitor)
    merged = _state(ann)
    assert merged["traits"] == {
        "name": "Ann",
        "plan": "free",
        "email": "ann@example.com",
        "city": "Oslo",
    }
    assert merged["events"] == ["a1", "a2", "b1", "b2"]
    assert ("anonymous_id", "phone", "phone") in merged["identifiers"]
    assert merged["last_seen"] == T0 + timedelta(days=3)
    assert not _state(visitor)["live"]

    # when the merge is split again
    profile_split(profile_id=visitor, actor=admin)

    # then both are exactly as before, and the audit trail says who undid what
    assert _state(ann) == before[ann]
    assert _state(visitor) == before[visitor]
    record.refresh_from_db()
    assert record.undone_at is not None and record.undone_by == admin


def test_split_after_automatic_merge_returns_events_by_their_identifiers(post_events: Any) -> None:
    # given a phone visitor who logs in as ann, merging two profiles automatically
    post_events("/v1/identify", {"messageId": "m1", "userId": "ann", "anonymousId": "laptop"})
    post_events("/v1/track", {"messageId": "m2", "anonymousId": "phone", "event": "Viewed"})
    post_events("/v1/identify", {"messageId": "m3", "userId": "ann", "anonymousId": "phone"})
    merge = ProfileMerge.objects.get()
    assert merge.reason == "shared_identifier"
    assert merge.details["identifier"] == ["anonymous_id", "phone"]

    # when the absorbed phone profile is split out
    profile_split(profile_id=merge.absorbed_id)

    # then the phone's anonymous events go back to it; events naming ann stay with ann
    assert _state(merge.absorbed_id)["events"] == ["m2"]
    assert _state(merge.survivor_id)["events"] == ["m1", "m3"]
    assert _state(merge.absorbed_id)["identifiers"] == [("anonymous_id", "phone", "phone")]


def test_merge_refuses_profiles_with_different_user_ids_unless_forced(post_events: Any) -> None:
    # given two known customers
    post_events("/v1/identify", {"userId": "ann"})
    post_events("/v1/identify", {"userId": "bob"})
    ann = Identifier.objects.get(value="ann").profile_id
    bob = Identifier.objects.get(value="bob").profile_id

    # when an automatic merge is attempted, it is refused and nothing changes
    with pytest.raises(MergeRefused, match="different user ids"):
        profile_merge(profile_ids=(ann, bob), reason="match_score")
    assert not ProfileMerge.objects.exists()
    assert Profile.objects.live().count() == 2

    # when an admin forces it, it happens and the override is on record
    record = profile_merge(profile_ids=(ann, bob), reason="admin", force=True)
    assert record.forced
    assert record.details["overridden"] == ["the profiles have different user ids"]


def test_merging_a_profile_with_itself_or_its_survivor_is_refused(
    two_people: tuple[Any, Any],
) -> None:
    ann, visitor = two_people
    profile_merge(profile_ids=(ann, visitor), reason="admin")
    with pytest.raises(MergeRefused, match="already one profile"):
        profile_merge(profile_ids=(ann, visitor), reason="admin")


def test_split_of_a_profile_that_was_not_merged_is_refused(two_people: tuple[Any, Any]) -> None:
    ann, _ = two_people
    with pytest.raises(MergeRefused, match="not merged"):
        profile_split(profile_id=ann)


def test_chained_merges_split_back_in_any_order(post_events: Any) -> None:
    # given three devices of one person merged one after another
    post_events("/v1/identify", {"messageId": "x1", "userId": "u", "anonymousId": "d1"})
    post_events("/v1/track", {"messageId": "x2", "anonymousId": "d2", "event": "E"})
    post_events("/v1/track", {"messageId": "x3", "anonymousId": "d3", "event": "E"})
    post_events("/v1/identify", {"messageId": "x4", "userId": "u", "anonymousId": "d2"})
    post_events("/v1/identify", {"messageId": "x5", "userId": "u", "anonymousId": "d3"})
    first, _second = ProfileMerge.objects.order_by("created_at")

    # when the first merge is undone after the second
    profile_split(profile_id=first.absorbed_id)

    # then only that device's profile comes back; the rest stays merged
    assert _state(first.absorbed_id)["events"] == ["x2"]
    assert _state(first.survivor_id)["events"] == ["x1", "x3", "x4", "x5"]
    assert Profile.objects.live().count() == 2


def test_a_younger_profile_with_a_user_id_survives_an_older_anonymous_one(
    post_events: Any,
) -> None:
    # given a visitor browsing for days before creating an account on another device
    post_events(
        "/v1/track",
        {"messageId": "v1", "anonymousId": "phone", "event": "Viewed", "timestamp": T0.isoformat()},
    )
    post_events(
        "/v1/identify",
        {
            "messageId": "u1",
            "userId": "ann",
            "anonymousId": "laptop",
            "traits": {"name": "Ann"},
            "timestamp": (T0 + timedelta(days=2)).isoformat(),
        },
    )
    visitor = Identifier.objects.get(value="phone").profile_id
    ann = Identifier.objects.get(value="ann").profile_id
    before = {ann: _state(ann), visitor: _state(visitor)}

    # when the account logs in on the phone
    post_events(
        "/v1/identify",
        {
            "messageId": "u2",
            "userId": "ann",
            "anonymousId": "phone",
            "timestamp": (T0 + timedelta(days=3)).isoformat(),
        },
    )

    # then the account's profile survives, though the visitor's is older
    merge = ProfileMerge.objects.get()
    assert (merge.survivor_id, merge.absorbed_id) == (ann, visitor)
    assert _state(ann)["first_seen"] == T0
    assert _state(ann)["events"] == ["u1", "u2", "v1"]

    # when it is split again, both are as they were (the login stays with ann)
    profile_split(profile_id=visitor)
    assert _state(visitor) == before[visitor]
    assert _state(ann) == {
        **before[ann],
        "events": ["u1", "u2"],
        "last_seen": T0 + timedelta(days=3),
    }


def _profile(days: int, identifiers: list[tuple[str, str]], traits: dict[str, Any]) -> Any:
    at = T0 + timedelta(days=days)
    profile = Profile.objects.create(
        traits=traits,
        trait_timestamps=dict.fromkeys(traits, at.isoformat()),
        first_seen=at,
        last_seen=at,
    )
    Identifier.objects.bulk_create(
        Identifier(profile=profile, type=kind, value=value, raw_value=value)
        for kind, value in identifiers
    )
    return profile.id


ANON = [("anonymous_id", "o1")]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize(
    ("older", "younger", "survivor"),
    [
        # more identifiers beat age
        ((ANON, {}), ([("anonymous_id", "y1"), ("email", "y@x.com")], {}), "younger"),
        # a user id beats more identifiers and more traits
        (
            ([*ANON, ("email", "o@x.com"), ("phone", "+14155552671")], {"name": "O"}),
            ([("user_id", "y")], {}),
            "younger",
        ),
        # as many identifiers: more traits
        ((ANON, {"name": "O"}), ([("email", "y@x.com")], {"name": "Y", "city": "Oslo"}), "younger"),
        # as rich: the older
        ((ANON, {"name": "O"}), ([("email", "y@x.com")], {"name": "Y"}), "older"),
    ],
)
def test_the_richer_then_older_profile_survives(
    older: tuple[list[tuple[str, str]], dict[str, Any]],
    younger: tuple[list[tuple[str, str]], dict[str, Any]],
    survivor: str,
    reverse: bool,
) -> None:
    # given
    ids = {"older": _profile(0, *older), "younger": _profile(5, *younger)}
    pair = (ids["older"], ids["younger"])

    # when merged, in either order
    record = profile_merge(profile_ids=pair[::-1] if reverse else pair, reason="admin")

    # then
    assert record.survivor_id == ids[survivor]
    absorbed = "older" if survivor == "younger" else "younger"
    assert record.absorbed_id == ids[absorbed]


def test_split_returns_events_whose_ids_were_sent_in_another_form(post_events: Any) -> None:
    # given user and anonymous ids matched case-insensitively, and a tablet whose
    # events spelled its id in several ways
    for key in ("user_id", "anonymous_id"):
        IdentifierTypeConfig.objects.update_or_create(
            key=key, defaults={"label": key, "normalization": "lowercase"}
        )
    post_events("/v1/identify", {"messageId": "i1", "userId": "Ann8", "anonymousId": "laptop8"})
    post_events("/v1/track", {"messageId": "t1", "anonymousId": " TAB8 ", "event": "Viewed"})
    post_events("/v1/track", {"messageId": "t2", "anonymousId": "Tab8", "event": "Viewed"})
    tablet = Identifier.objects.get(type="anonymous_id", value="tab8").profile_id
    # ... until ann logged in on it, and kept using it
    post_events("/v1/identify", {"messageId": "i2", "userId": "ANN8", "anonymousId": "tab8"})
    post_events(
        "/v1/track",
        {"messageId": "t3", "userId": "ann8", "anonymousId": "TAB8", "event": "Viewed"},
    )
    merge = ProfileMerge.objects.get()
    assert merge.absorbed_id == tablet

    # when the tablet is split out
    profile_split(profile_id=tablet)

    # then its own events return, whatever form they sent its id in; those that
    # name ann (in any form) stay with her
    assert _state(tablet)["events"] == ["t1", "t2"]
    assert _state(merge.survivor_id)["events"] == ["i1", "i2", "t3"]


def test_split_returns_events_whose_id_was_sent_with_surrounding_spaces(
    post_events: Any,
) -> None:
    # given a tablet whose events sent " tab8 ", merged into ann through "tab8"
    post_events("/v1/identify", {"messageId": "i1", "userId": "ann8", "anonymousId": "laptop8"})
    post_events("/v1/track", {"messageId": "t1", "anonymousId": " tab8 ", "event": "Viewed"})
    post_events("/v1/identify", {"messageId": "i2", "userId": "ann8", "anonymousId": "tab8"})
    merge = ProfileMerge.objects.get()

    # when
    profile_split(profile_id=merge.absorbed_id)

    # then
    assert _state(merge.absorbed_id)["events"] == ["t1"]
    assert _state(merge.survivor_id)["events"] == ["i1", "i2"]


def _merge_one(pair: tuple[Any, Any]) -> ProfileMerge:
    return profile_merge(profile_ids=pair, reason="admin")


def _merge_bulk(pair: tuple[Any, Any]) -> ProfileMerge:
    [outcome] = profile_merge_bulk(
        requests=[MergeRequest(profile_ids=pair, details={})], reason="match_score"
    )
    assert outcome.merge is not None
    return outcome.merge


@pytest.mark.parametrize("merge", [_merge_one, _merge_bulk], ids=["pair", "bulk"])
@pytest.mark.parametrize(
    ("absorbed_days", "absorbed_source", "signup_source", "plan"),
    [
        # the absorbed profile saw both traits earlier: its signup_source, ann's plan
        (0, "ads", "ads", "max"),
        # it saw them later: ann's signup_source, its plan
        (2, "email", "seo", "pro"),
    ],
)
def test_merge_keeps_the_first_seen_value_of_a_first_seen_trait(
    merge: Any, absorbed_days: int, absorbed_source: str, signup_source: str, plan: str
) -> None:
    # given signup_source kept as first seen (plan by the default, newest), and
    # ann, who saw hers one day after T0
    TraitMergeRule.objects.create(trait="signup_source", strategy="first_seen")
    ann = _profile(1, [("user_id", "ann")], {"signup_source": "seo", "plan": "max"})
    traits = {"signup_source": absorbed_source, "plan": "pro"}
    phone = _profile(absorbed_days, [("anonymous_id", "phone")], traits)
    before = {ann: _state(ann), phone: _state(phone)}

    # when they are merged
    record = merge((phone, ann))

    # then
    assert (record.survivor_id, record.absorbed_id) == (ann, phone)
    survivor = Profile.objects.get(pk=ann)
    assert survivor.traits == {"signup_source": signup_source, "plan": plan}
    earliest = T0 + timedelta(days=min(absorbed_days, 1))
    assert survivor.trait_timestamps["signup_source"] == earliest.isoformat()

    # when split again, both are as they were
    profile_split(profile_id=phone)
    assert {ann: _state(ann), phone: _state(phone)} == before

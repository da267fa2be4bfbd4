"""The bulk merge path (automatic dedup merges): same rules, same records and the same
result as ``profile_merge`` pair by pair, and every merge splits back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import transaction

from apps.events.models import Event
from apps.identity.models import Identifier, IdentifierTypeConfig, Profile, ProfileMerge
from apps.identity.services import (
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
        "merged_into": p.merged_into_id,
        "traits": p.traits,
        "trait_timestamps": p.trait_timestamps,
        "first_seen": p.first_seen,
        "last_seen": p.last_seen,
        "identifiers": sorted(
            Identifier.objects.filter(profile=p).values_list("type", "value", "raw_value")
        ),
        "events": sorted(Event.objects.filter(profile=p).values_list("message_id", flat=True)),
    }


def _records() -> list[dict[str, Any]]:
    return [
        {
            "survivor": r.survivor_id,
            "absorbed": r.absorbed_id,
            "reason": r.reason,
            "details": r.details,
            "forced": r.forced,
            "survivor_snapshot": r.survivor_snapshot,
            "absorbed_snapshot": {
                **r.absorbed_snapshot,
                "identifiers": sorted(r.absorbed_snapshot["identifiers"]),
            },
        }
        for r in ProfileMerge.objects.order_by("created_at", "id")
    ]


def _person(
    n: int, *, user_id: str | None = None, emails: int = 1, traits: dict[str, Any] | None = None
) -> uuid.UUID:
    """A profile seen ``n`` days after T0, with identifiers of its own."""
    at = T0 + timedelta(days=n)
    profile = Profile.objects.create(
        traits={"name": f"Person {n}", "plan": f"plan-{n}", **(traits or {})},
        trait_timestamps={"name": at.isoformat(), "plan": at.isoformat()},
        first_seen=at,
        last_seen=at + timedelta(hours=n),
    )
    keys = [("anonymous_id", f"device-{n}")]
    keys += [("email", f"p{n}.{i}@example.com") for i in range(emails)]
    if user_id:
        keys.append(("user_id", user_id))
    Identifier.objects.bulk_create(
        Identifier(profile=profile, type=kind, value=value, raw_value=value) for kind, value in keys
    )
    return profile.id


class _Rollback(Exception):
    pass


def _outcome_of(merge: Any) -> dict[str, Any]:
    """Run ``merge`` and return the profiles and merge records it leaves; then undo it."""
    result: dict[str, Any] = {}
    try:
        with transaction.atomic():
            merge()
            ids = Profile.objects.order_by("first_seen").values_list("id", flat=True)
            result = {"profiles": [_state(pid) for pid in ids], "records": _records()}
            raise _Rollback
    except _Rollback:
        pass
    return result


def test_bulk_merges_leave_what_pair_by_pair_merges_leave() -> None:
    # given five people; pairs that chain (b+c after a+b), repeat and cross
    a, b, c, d, e = (_person(n) for n in (3, 1, 5, 2, 4))
    pairs = [(a, b), (b, c), (c, a), (d, e), (e, b)]

    def one_by_one() -> None:
        for x, y in pairs:
            if Profile.objects.get(pk=x).merged_into_id or Profile.objects.get(pk=y).merged_into_id:
                live_x, live_y = (_live(p) for p in (x, y))
                if live_x == live_y:
                    continue
            profile_merge(profile_ids=(x, y), reason="match_score", details={"pair": [str(x)]})

    def in_bulk() -> None:
        outcomes = profile_merge_bulk(
            requests=[
                MergeRequest(profile_ids=(x, y), details={"pair": [str(x)]}) for x, y in pairs
            ],
            reason="match_score",
        )
        assert [(o.merge is not None, o.already_one, o.refused) for o in outcomes] == [
            (True, False, ""),
            (True, False, ""),
            (False, True, ""),
            (True, False, ""),
            (True, False, ""),
        ]

    # when
    expected, got = _outcome_of(one_by_one), _outcome_of(in_bulk)

    # then: the same profiles (traits, identifiers, times) and the same merge records
    assert got == expected
    assert len(got["records"]) == 4
    assert [p["merged_into"] for p in got["profiles"]].count(None) == 1


def _live(pid: uuid.UUID) -> uuid.UUID:
    profile = Profile.objects.get(pk=pid)
    while profile.merged_into_id is not None:
        profile = Profile.objects.get(pk=profile.merged_into_id)
    return profile.id


def test_bulk_merge_then_split_leaves_profiles_as_they_were(post_events: Any) -> None:
    # given a customer and two visitors built from events, each with traits and events
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
                {
                    "type": "identify",
                    "messageId": "c1",
                    "anonymousId": "tablet",
                    "traits": {"city": "Bergen", "phone": "+47 412 34 567"},
                    "timestamp": (T0 + timedelta(days=4)).isoformat(),
                },
            ]
        },
    )
    ann, phone, tablet = (
        Identifier.objects.get(type="anonymous_id", value=v).profile_id
        for v in ("laptop", "phone", "tablet")
    )
    before = {pid: _state(pid) for pid in (ann, phone, tablet)}

    # when the tablet is merged with the phone, then the phone with ann, in one batch
    outcomes = profile_merge_bulk(
        requests=[
            MergeRequest(profile_ids=(tablet, phone), details={"score": 30.0}),
            MergeRequest(profile_ids=(phone, ann), details={"score": 25.0}),
        ],
        reason=ProfileMerge.Reason.MATCH_SCORE,
    )

    # then ann's profile (the one with a user id) holds everything; the tablet,
    # richer than the phone (a phone number besides its anonymous id), took it in
    assert [(o.merge.survivor_id, o.merge.absorbed_id) for o in outcomes if o.merge] == [
        (tablet, phone),
        (ann, tablet),
    ]
    merged = _state(ann)
    assert merged["events"] == ["a1", "b1", "b2", "c1"]
    assert merged["traits"]["city"] == "Bergen"
    assert merged["traits"]["plan"] == "free"
    assert {("anonymous_id", v) for v in ("laptop", "phone", "tablet")} <= {
        i[:2] for i in merged["identifiers"]
    }
    assert Profile.objects.live().count() == 1

    # when both merges are split (the later one first: the tablet took the phone's
    # traits before it was merged itself)
    profile_split(profile_id=tablet)
    profile_split(profile_id=phone)

    # then all three are exactly as before
    assert {pid: _state(pid) for pid in (ann, phone, tablet)} == before
    assert ProfileMerge.objects.filter(undone_at__isnull=True).count() == 0


def test_bulk_merge_refuses_different_user_ids_also_through_an_earlier_pair() -> None:
    # given ann and bob (two accounts) and a visitor without one
    ann = _person(1, user_id="ann")
    visitor = _person(2)
    bob = _person(3, user_id="bob")

    # when the visitor joins ann, and then the visitor is paired with bob
    outcomes = profile_merge_bulk(
        requests=[
            MergeRequest(profile_ids=(visitor, ann), details={}),
            MergeRequest(profile_ids=(visitor, bob), details={}),
            MergeRequest(profile_ids=(ann, bob), details={}),
        ],
        reason="match_score",
    )

    # then only the first merge happens: bob stays on his own
    assert outcomes[0].merge is not None
    assert outcomes[1].refused == "Not merged: the profiles have different user ids."
    assert outcomes[2].refused == "Not merged: the profiles have different user ids."
    assert ProfileMerge.objects.count() == 1
    assert _state(bob)["merged_into"] is None
    assert _state(visitor)["merged_into"] == ann
    assert Identifier.objects.filter(profile_id=ann, type="user_id").count() == 1


def test_bulk_merge_keeps_the_cap_on_identifiers_counted_across_the_batch() -> None:
    # given a limit of 3 emails per profile and three people with 1, 1 and 2 emails
    IdentifierTypeConfig.objects.update_or_create(
        key="email",
        defaults={"label": "Email", "max_per_profile": 3, "normalization": "email"},
    )
    a, b, c = _person(1), _person(2), _person(3, emails=2)

    # when a+b merge (2 emails), then a+c would make 4
    outcomes = profile_merge_bulk(
        requests=[
            MergeRequest(profile_ids=(a, b), details={}),
            MergeRequest(profile_ids=(a, c), details={}),
        ],
        reason="match_score",
    )

    # then the second is refused and c keeps its own identifiers
    assert outcomes[0].merge is not None
    assert outcomes[1].refused == (
        "Not merged: together they would hold 4 email identifiers (limit 3)."
    )
    assert Identifier.objects.filter(profile_id=c).count() == 3
    assert _state(c)["merged_into"] is None


def test_bulk_merge_refuses_a_profile_that_does_not_exist() -> None:
    a = _person(1)
    outcomes = profile_merge_bulk(
        requests=[MergeRequest(profile_ids=(a, uuid.uuid4()), details={})],
        reason="match_score",
    )
    assert outcomes[0].refused == "Profile not found."
    assert not ProfileMerge.objects.exists()
    assert _state(a)["merged_into"] is None

"""A split keeps the two profiles apart: no later event or merge joins them again,
unless an admin forces it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from apps.api_auth.services import api_token_create
from apps.events.models import Event
from apps.identity.models import (
    Identifier,
    IdentityConflict,
    Profile,
    ProfileMerge,
    ProfileSeparation,
)
from apps.identity.services import (
    MergeRefused,
    MergeRequest,
    profile_merge,
    profile_merge_bulk,
    profile_split,
)

pytestmark = pytest.mark.django_db

REFUSED = "Not merged: an admin split these profiles apart."


def _owner(value: str) -> Any:
    return Identifier.objects.get(value=value).profile_id


def _api(*perms: str, name: str = "admin") -> Client:
    user = get_user_model().objects.create_user(name)
    for perm in perms:
        user.user_permissions.add(Permission.objects.get(codename=perm))
    _, raw = api_token_create(name="t", user=user)
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


def _post(client: Client, path: str, body: Any = None) -> Any:
    return client.post(path, data=orjson.dumps(body or {}), content_type="application/json")


@pytest.fixture
def split_tablet(post_events: Any) -> dict[str, Any]:
    """ann5's laptop profile, and a tablet that was merged into it and split out
    again through the API."""
    post_events("/v1/identify", {"messageId": "m1", "userId": "ann5", "anonymousId": "laptop5"})
    post_events("/v1/track", {"messageId": "m2", "anonymousId": "tablet5", "event": "Viewed"})
    post_events("/v1/identify", {"messageId": "m3", "userId": "ann5", "anonymousId": "tablet5"})
    merge = ProfileMerge.objects.get()
    client = _api("view_profile", "change_profile", name="splitter")
    response = _post(
        client, f"/api/v1/profiles/id:{merge.absorbed_id}/split", {"note": "a shared tablet"}
    )
    assert response.status_code == 200, response.content
    return {"ann": merge.survivor_id, "tablet": merge.absorbed_id, "merge": merge}


def test_split_records_who_kept_which_profiles_apart_and_why(split_tablet: dict[str, Any]) -> None:
    # then
    separation = ProfileSeparation.objects.get()
    assert {separation.profile_a_id, separation.profile_b_id} == {
        split_tablet["ann"],
        split_tablet["tablet"],
    }
    assert separation.split_merge_id == split_tablet["merge"].id
    assert separation.note == "a shared tablet"
    assert separation.created_by.username == "splitter"
    assert separation.created_at is not None
    assert separation.ended_at is None


def test_an_event_naming_both_after_a_split_does_not_merge_them_again(
    split_tablet: dict[str, Any], post_events: Any
) -> None:
    # when ann uses the tablet again
    post_events(
        "/v1/track",
        {"messageId": "m4", "userId": "ann5", "anonymousId": "tablet5", "event": "Viewed"},
    )

    # then they stay apart: the event goes to ann by her user id, the tablet's id is
    # dropped from it, and the conflict says why
    ann, tablet = split_tablet["ann"], split_tablet["tablet"]
    assert Profile.objects.get(pk=tablet).merged_into_id is None
    assert ProfileMerge.objects.filter(undone_at__isnull=True).count() == 0
    assert (_owner("ann5"), _owner("tablet5")) == (ann, tablet)
    event = Event.objects.get(message_id="m4")
    assert event.profile_id == ann
    conflict = IdentityConflict.objects.get()
    assert (conflict.profile_id, conflict.other_profile_id) == (ann, tablet)
    assert (conflict.identifier_type, conflict.identifier_value) == ("anonymous_id", "tablet5")
    assert (conflict.rule, conflict.event_id) == ("split_by_admin", event.id)


def test_profiles_kept_apart_stay_apart_after_one_is_merged_into_another(
    split_tablet: dict[str, Any], post_events: Any
) -> None:
    # given the tablet later merged with a phone (nothing keeps those two apart)
    post_events("/v1/track", {"messageId": "p1", "anonymousId": "phone5", "event": "Viewed"})
    phone = _owner("phone5")
    record = profile_merge(profile_ids=(phone, split_tablet["tablet"]), reason="admin")
    holder = record.survivor_id

    # when ann's user id and the phone's id arrive together
    post_events(
        "/v1/track",
        {"messageId": "p2", "userId": "ann5", "anonymousId": "phone5", "event": "Viewed"},
    )

    # then the profile that holds the tablet is still kept apart from ann
    assert Profile.objects.live().count() == 2
    assert _owner("phone5") == holder
    conflict = IdentityConflict.objects.get()
    assert (conflict.rule, conflict.profile_id, conflict.other_profile_id) == (
        "split_by_admin",
        split_tablet["ann"],
        holder,
    )


def test_merge_without_force_is_refused_between_profiles_kept_apart(
    split_tablet: dict[str, Any],
) -> None:
    # when
    with pytest.raises(MergeRefused) as refused:
        profile_merge(profile_ids=(split_tablet["ann"], split_tablet["tablet"]), reason="admin")

    # then
    assert refused.value.message == REFUSED
    assert refused.value.extra == {"blockers": ["an admin split these profiles apart"]}
    assert ProfileMerge.objects.filter(undone_at__isnull=True).count() == 0


def test_merge_api_without_force_is_409_between_profiles_kept_apart(
    split_tablet: dict[str, Any],
) -> None:
    # when
    response = _post(
        _api("view_profile", "change_profile"),
        "/api/v1/profiles/merge",
        {"profiles": ["user_id:ann5", "anonymous_id:tablet5"]},
    )

    # then
    assert response.status_code == 409
    assert response.json()["detail"] == REFUSED


def test_bulk_merge_refuses_profiles_kept_apart_also_through_an_earlier_pair(
    split_tablet: dict[str, Any], post_events: Any
) -> None:
    # given a phone nothing keeps apart from either
    post_events("/v1/track", {"messageId": "p1", "anonymousId": "phone5", "event": "Viewed"})
    phone = _owner("phone5")
    ann, tablet = split_tablet["ann"], split_tablet["tablet"]

    # when dedup merges ann with the tablet, then the phone with the tablet and
    # with ann (which would join the tablet to ann)
    outcomes = profile_merge_bulk(
        requests=[
            MergeRequest(profile_ids=(ann, tablet), details={}),
            MergeRequest(profile_ids=(phone, tablet), details={}),
            MergeRequest(profile_ids=(phone, ann), details={}),
        ],
        reason=ProfileMerge.Reason.MATCH_SCORE,
    )

    # then only the phone and the tablet merge
    assert [o.refused for o in outcomes] == [REFUSED, "", REFUSED]
    assert outcomes[1].merge is not None
    assert {outcomes[1].merge.survivor_id, outcomes[1].merge.absorbed_id} == {phone, tablet}
    assert Profile.objects.get(pk=ann).merged_into_id is None
    assert _owner("tablet5") == _owner("phone5") != _owner("ann5")


def test_merge_then_split_then_force_merge_joins_them_and_ends_the_separation(
    split_tablet: dict[str, Any], post_events: Any
) -> None:
    # given
    ann, tablet = split_tablet["ann"], split_tablet["tablet"]
    separation = ProfileSeparation.objects.get()
    forcer = _api("view_profile", "change_profile", "force_merge_profile", name="forcer")

    # when an admin forces the merge
    response = _post(
        forcer,
        "/api/v1/profiles/merge",
        {"profiles": ["user_id:ann5", "anonymous_id:tablet5"], "force": True, "note": "same"},
    )

    # then they are one, the override is on record, and the separation has ended
    assert response.status_code == 200, response.content
    merge = response.json()
    assert (merge["survivor"], merge["absorbed"], merge["forced"]) == (str(ann), str(tablet), True)
    assert merge["details"] == {
        "note": "same",
        "via": "api",
        "overridden": ["an admin split these profiles apart"],
        "separations": [separation.id],
    }
    separation.refresh_from_db()
    assert separation.ended_at is not None
    assert separation.ended_by.username == "forcer"
    assert separation.ended_by_merge_id == merge["id"]
    assert not ProfileSeparation.objects.active().exists()

    # when ann uses the tablet again, nothing conflicts
    post_events(
        "/v1/track",
        {"messageId": "m5", "userId": "ann5", "anonymousId": "tablet5", "event": "Viewed"},
    )
    assert Event.objects.get(message_id="m5").profile_id == ann
    assert not IdentityConflict.objects.exists()

    # when it is split once more, they are kept apart once more
    profile_split(profile_id=tablet)
    assert ProfileSeparation.objects.active().count() == 1
    post_events(
        "/v1/track",
        {"messageId": "m6", "userId": "ann5", "anonymousId": "tablet5", "event": "Viewed"},
    )
    assert Profile.objects.get(pk=tablet).merged_into_id is None
    assert IdentityConflict.objects.get().rule == "split_by_admin"

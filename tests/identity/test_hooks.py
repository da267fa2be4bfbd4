"""Profile lifecycle hooks (apps/identity/hooks.py), with handlers registered from a
test-only app (tests/hooks_app): order, what they are told, and a failing handler
rolling the whole merge or split back."""

from __future__ import annotations

from typing import Any

import pytest

from apps.common.registry import RegistryError
from apps.events.models import Event
from apps.identity import hooks
from apps.identity.hooks import ProfilesMerged, ProfileSplit
from apps.identity.models import Identifier, Profile, ProfileMerge
from apps.identity.services import MergeRequest, profile_merge, profile_merge_bulk, profile_split
from tests.hooks_app.models import Written
from tests.registry import registered

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_profiles(post_events: Any) -> tuple[Any, Any]:
    post_events(
        "/v1/batch",
        {
            "batch": [
                {"type": "identify", "messageId": "a", "userId": "ann", "anonymousId": "laptop"},
                {"type": "track", "messageId": "b", "anonymousId": "phone", "event": "E"},
            ]
        },
    )
    ann = Identifier.objects.get(type="user_id", value="ann").profile_id
    phone = Identifier.objects.get(type="anonymous_id", value="phone").profile_id
    return ann, phone


def test_the_apps_below_register_in_a_documented_order() -> None:
    # events move first, then consent, then what derives from events (segments'
    # features, then memberships), then what derives from those (clusters, then
    # the holdout keys and exposures of content decisions)
    derived = ["segments", "segments.memberships", "clustering"]
    assert hooks.merged.names() == ["events", "consent", *derived, "personalization"]
    assert hooks.split.names() == ["events", "consent", *derived, "personalization"]


def test_a_second_handler_of_the_same_name_is_refused() -> None:
    with pytest.raises(RegistryError, match="'events' is registered already"):
        hooks.merged.register("events", lambda event: None)


@pytest.mark.parametrize("bulk", [False, True], ids=["pair", "bulk"])
def test_merge_handlers_run_in_order_inside_the_merge(two_profiles, bulk) -> None:
    # given a test app's handler, after events and consent
    ann, phone = two_profiles
    seen: list[dict[Any, Any]] = []

    def handler(event: ProfilesMerged) -> None:
        # it runs after the apps below it: the events are the survivor's already
        assert Event.objects.filter(profile_id=ann).count() == 2
        seen.append(dict(event.mapping))
        Written.objects.create(what="merged", key=str(next(iter(event.mapping))))

    with registered(hooks.merged, "hooks_app", handler, order=30):
        # when
        if bulk:
            profile_merge_bulk(
                requests=[MergeRequest(profile_ids=(ann, phone), details={})], reason="admin"
            )
        else:
            profile_merge(profile_ids=(ann, phone), reason="admin")

    # then it was told who went where, once
    assert seen == [{phone: ann}]
    assert Written.objects.get().key == str(phone)


@pytest.mark.parametrize("bulk", [False, True], ids=["pair", "bulk"])
def test_a_failing_merge_handler_rolls_the_merge_back(two_profiles, bulk) -> None:
    # given a handler that writes, then fails
    ann, phone = two_profiles

    def broken(event: ProfilesMerged) -> None:
        Written.objects.create(what="merged", key="x")
        raise RuntimeError("handler failed")

    # when
    with (
        registered(hooks.merged, "hooks_app", broken, order=30),
        pytest.raises(RuntimeError, match="handler failed"),
    ):
        if bulk:
            profile_merge_bulk(
                requests=[MergeRequest(profile_ids=(ann, phone), details={})], reason="admin"
            )
        else:
            profile_merge(profile_ids=(ann, phone), reason="admin")

    # then nothing of the merge is kept: profiles, identifiers, events, audit, the
    # handlers that ran before it, and its own write
    assert Profile.objects.get(id=phone).merged_into_id is None
    assert Identifier.objects.get(value="phone").profile_id == phone
    assert Event.objects.get(message_id="b").profile_id == phone
    assert not ProfileMerge.objects.exists()
    assert not Written.objects.exists()


def test_split_handlers_are_told_what_moved_back(two_profiles) -> None:
    # given a merge, and a test app's split handler
    ann, phone = two_profiles
    profile_merge(profile_ids=(ann, phone), reason="admin")
    told: list[ProfileSplit] = []

    def handler(event: ProfileSplit) -> None:
        # after events: the split-out profile's event is back already
        assert Event.objects.get(message_id="b").profile_id == phone
        told.append(event)

    with registered(hooks.split, "hooks_app", handler, order=30):
        # when
        profile_split(profile_id=phone)

    # then
    [event] = told
    assert (event.profile_id, event.from_profile_id) == (phone, ann)
    assert event.identifiers == frozenset({("anonymous_id", "phone")})
    assert event.kept_user_ids == frozenset({("user_id", "ann")})
    assert event.tree_ids == (phone,)
    assert event.normalize("anonymous_id", " phone ") == "phone"


def test_a_failing_split_handler_rolls_the_split_back(two_profiles) -> None:
    # given a merge, and a split handler that fails
    ann, phone = two_profiles
    profile_merge(profile_ids=(ann, phone), reason="admin")

    def broken(event: ProfileSplit) -> None:
        raise RuntimeError("handler failed")

    # when
    with registered(hooks.split, "hooks_app", broken, order=30), pytest.raises(RuntimeError):
        profile_split(profile_id=phone)

    # then it is still merged, with its event and identifier at the survivor
    assert Profile.objects.get(id=phone).merged_into_id == ann
    assert Event.objects.get(message_id="b").profile_id == ann
    assert Identifier.objects.get(value="phone").profile_id == ann
    assert ProfileMerge.objects.get().undone_at is None

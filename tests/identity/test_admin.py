from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from apps.identity.models import Identifier, Profile, ProfileMerge, ProfileSeparation

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_(client: Client) -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def merged(post_events: Any) -> ProfileMerge:
    post_events(
        "/v1/identify", {"userId": "ann", "anonymousId": "laptop", "traits": {"name": "Ann"}}
    )
    post_events("/v1/track", {"anonymousId": "phone", "event": "Viewed"})
    post_events("/v1/identify", {"userId": "ann", "anonymousId": "phone"})
    post_events("/v1/identify", {"userId": "bob", "anonymousId": "laptop"})  # refused: conflict
    return ProfileMerge.objects.get()


def test_profile_page_shows_identifiers_merge_history_and_conflicts(
    admin_client_: Client, merged: ProfileMerge
) -> None:
    # when
    page = admin_client_.get(f"/admin/identity/profile/{merged.survivor_id}/change/")
    # then
    assert page.status_code == 200
    html = page.content.decode()
    for text in (
        "laptop",
        "phone",
        "Ann",
        "Merge history",
        "named anonymous_id phone together with user_id ann",
        "Split out",
    ):
        assert text in html
    bob = Identifier.objects.get(value="bob").profile_id
    conflicts = admin_client_.get(f"/admin/identity/profile/{bob}/change/").content.decode()
    assert "Identity conflicts" in conflicts and "Profiles with different user ids" in conflicts
    events = admin_client_.get(f"/admin/events/event/?profile__id__exact={merged.survivor_id}")
    assert events.status_code == 200
    listing = events.content.decode()
    assert "Viewed" in listing  # the phone's event moved with the merge
    assert f"?profile__id__exact={bob}" not in listing


def test_split_from_admin_asks_then_splits(admin_client_: Client, merged: ProfileMerge) -> None:
    url = f"/admin/identity/profile/{merged.absorbed_id}/split/"
    # when the admin opens the split page, nothing happens yet
    confirm = admin_client_.get(url)
    assert confirm.status_code == 200
    assert "anonymous_id:phone" in confirm.content.decode()
    assert Profile.objects.get(pk=merged.absorbed_id).merged_into_id == merged.survivor_id
    # when they confirm
    response = admin_client_.post(url)
    # then the profile is live again and the merge is marked undone by them
    assert response.status_code == 302
    merged.refresh_from_db()
    assert merged.undone_by.username == "root"
    assert Profile.objects.get(pk=merged.absorbed_id).merged_into_id is None


def test_merge_action_respects_safety_rules_and_force(
    admin_client_: Client, post_events: Any
) -> None:
    post_events("/v1/identify", {"userId": "ann"})
    post_events("/v1/identify", {"userId": "bob"})
    ids = [str(p) for p in Profile.objects.values_list("id", flat=True)]
    data = {"action": "merge_selected", "_selected_action": ids}
    # when an admin merges two profiles with different user ids
    response = admin_client_.post("/admin/identity/profile/", data, follow=True)
    # then it is refused with the reason
    assert "different user ids" in response.content.decode()
    assert not ProfileMerge.objects.exists()
    # when they force it, it happens, audited as forced by them
    admin_client_.post("/admin/identity/profile/", {**data, "action": "force_merge_selected"})
    record = ProfileMerge.objects.get()
    assert record.forced and record.actor.username == "root" and record.reason == "admin"


def test_staff_without_force_permission_has_no_force_action(
    client: Client, post_events: Any
) -> None:
    staff = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    for codename in ("view_profile", "change_profile"):
        staff.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(staff)
    page = client.get("/admin/identity/profile/").content.decode()
    assert "merge_selected" in page
    assert "force_merge_selected" not in page


@pytest.mark.parametrize(
    "url",
    [
        "/admin/identity/identifiertypeconfig/",
        "/admin/identity/junkidentifiervalue/",
        "/admin/identity/traitmergerule/",
        "/admin/identity/profilemerge/",
        "/admin/identity/identityconflict/",
        "/admin/identity/profileseparation/",
    ],
)
def test_identity_admin_pages_render(admin_client_: Client, merged: ProfileMerge, url: str) -> None:
    assert admin_client_.get(url).status_code == 200


def test_split_from_admin_keeps_the_two_apart_with_the_admins_reason(
    admin_client_: Client, merged: ProfileMerge
) -> None:
    # when
    admin_client_.post(
        f"/admin/identity/profile/{merged.absorbed_id}/split/", {"note": "her brother's phone"}
    )

    # then
    separation = ProfileSeparation.objects.get()
    assert {separation.profile_a_id, separation.profile_b_id} == {
        merged.absorbed_id,
        merged.survivor_id,
    }
    assert (separation.note, separation.created_by.username) == ("her brother's phone", "root")
    assert separation.split_merge_id == merged.id
    page = admin_client_.get("/admin/identity/profileseparation/").content.decode()
    assert "her brother&#x27;s phone" in page

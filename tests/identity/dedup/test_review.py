"""The review queue: admin decisions and the admin pages."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

import apps.identity.dedup.admin  # noqa: F401  (registers the dedup admin)
from apps.identity.dedup.models import DuplicateCandidate
from apps.identity.dedup.services import (
    dedup_run,
    duplicate_candidate_merge,
    duplicate_candidate_reject,
)
from apps.identity.models import Profile, ProfileMerge

from .conftest import ROBERT, variant

pytestmark = pytest.mark.django_db

MakeProfile = Callable[..., Profile]


def _queued_pair(make_profile: MakeProfile, **kwargs: str) -> DuplicateCandidate:
    make_profile(
        *[("user_id", u) for u in [kwargs.get("a")] if u], traits=variant(ROBERT, phone=None)
    )
    make_profile(
        *[("user_id", u) for u in [kwargs.get("b")] if u],
        traits=variant(ROBERT, firstName="Robart", phone=None, email="rk@web.de"),
    )
    dedup_run(full=True)
    return DuplicateCandidate.objects.get(status=DuplicateCandidate.Status.PENDING)


@pytest.fixture
def staff(db: None) -> Client:
    user = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def test_admin_merge_goes_through_profile_merge(make_profile: MakeProfile) -> None:
    # given
    candidate = _queued_pair(make_profile)
    user = get_user_model().objects.create_user("reviewer")

    # when
    result = duplicate_candidate_merge(candidate_id=candidate.pk, actor=user)

    # then
    assert result.status == DuplicateCandidate.Status.MERGED
    merge = ProfileMerge.objects.get()
    assert result.merge == merge
    assert (merge.reason, merge.actor) == (ProfileMerge.Reason.ADMIN, user)
    assert merge.details["candidate_id"] == candidate.pk
    assert result.decided_by == user and result.decided_at is not None


def test_admin_merge_refused_by_the_rules_is_recorded(make_profile: MakeProfile) -> None:
    # given
    candidate = _queued_pair(make_profile, a="u-1", b="u-2")

    # when
    result = duplicate_candidate_merge(candidate_id=candidate.pk, actor=None)

    # then
    assert result.status == DuplicateCandidate.Status.REFUSED
    assert "different user ids" in result.note
    assert not ProfileMerge.objects.exists()


def test_forced_merge_overrides_the_rules(make_profile: MakeProfile) -> None:
    # given
    candidate = _queued_pair(make_profile, a="u-1", b="u-2")

    # when
    result = duplicate_candidate_merge(candidate_id=candidate.pk, actor=None, force=True)

    # then
    assert result.status == DuplicateCandidate.Status.MERGED
    assert ProfileMerge.objects.get().forced is True


def test_reject_is_final(make_profile: MakeProfile) -> None:
    # given
    candidate = _queued_pair(make_profile)

    # when
    duplicate_candidate_reject(candidate_id=candidate.pk, actor=None)
    again = duplicate_candidate_merge(candidate_id=candidate.pk, actor=None)

    # then
    assert again.status == DuplicateCandidate.Status.REJECTED
    assert not ProfileMerge.objects.exists()


def test_review_queue_lists_pending_pairs_first(make_profile: MakeProfile, staff: Client) -> None:
    # given
    candidate = _queued_pair(make_profile)

    # when
    response = staff.get("/admin/identity/duplicatecandidate/")

    # then
    assert response.status_code == 200
    assert "Robert Kowalski  ~  Robert Kowalski" in response.content.decode()
    assert response.context["cl"].result_list[0] == candidate


def test_change_page_shows_the_pair_side_by_side(make_profile: MakeProfile, staff: Client) -> None:
    # given
    candidate = _queued_pair(make_profile)

    # when
    response = staff.get(f"/admin/identity/duplicatecandidate/{candidate.pk}/change/")

    # then
    page = response.content.decode()
    assert response.status_code == 200
    assert "Side by side" in page
    assert "robert.kowalski@example.com" in page and "rk@web.de" in page
    assert "42 Maple Street, 62704, Springfield, IL, US" in page
    assert 'name="_dedup_merge"' in page and 'name="_dedup_reject"' in page
    assert "No automatic merge: first names differ or are only alike" in page


def test_not_the_same_person_button(make_profile: MakeProfile, staff: Client) -> None:
    # given
    candidate = _queued_pair(make_profile)

    # when
    response = staff.post(
        f"/admin/identity/duplicatecandidate/{candidate.pk}/change/", {"_dedup_reject": "1"}
    )

    # then
    assert response.status_code == 302
    candidate.refresh_from_db()
    assert candidate.status == DuplicateCandidate.Status.REJECTED
    assert candidate.decided_by is not None


def test_merge_action(make_profile: MakeProfile, staff: Client) -> None:
    # given
    candidate = _queued_pair(make_profile)

    # when
    response = staff.post(
        "/admin/identity/duplicatecandidate/",
        {"action": "merge_pairs", "_selected_action": [candidate.pk]},
    )

    # then
    assert response.status_code == 302
    candidate.refresh_from_db()
    assert candidate.status == DuplicateCandidate.Status.MERGED
    assert ProfileMerge.objects.get().reason == ProfileMerge.Reason.ADMIN


def test_force_action_needs_the_permission(make_profile: MakeProfile) -> None:
    # given
    candidate = _queued_pair(make_profile, a="u-1", b="u-2")
    user = get_user_model().objects.create_user("reviewer", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_duplicatecandidate", "change_duplicatecandidate"]
        )
    )
    client = Client()
    client.force_login(user)

    # when
    response = client.post(
        "/admin/identity/duplicatecandidate/",
        {"action": "force_merge_pairs", "_selected_action": [candidate.pk]},
    )

    # then: the action is not offered, nothing merged
    assert response.status_code in (200, 302)
    assert not ProfileMerge.objects.exists()
    candidate.refresh_from_db()
    assert candidate.status == DuplicateCandidate.Status.PENDING


def test_run_list(make_profile: MakeProfile, staff: Client) -> None:
    # given
    make_profile(traits=ROBERT)
    dedup_run(full=True)

    # when
    response = staff.get("/admin/identity/deduprun/")

    # then
    assert response.status_code == 200
    assert "succeeded" in response.content.decode().lower()


def test_review_queue_tells_pairs_apart_that_both_round_to_100_percent(
    make_profile: MakeProfile, staff: Client
) -> None:
    # given two pending pairs, both above 99.99 %, one far likelier than the other
    people = sorted(
        (make_profile(traits={"name": f"Person {i}"}) for i in range(4)), key=lambda p: str(p.pk)
    )
    likelier = DuplicateCandidate.objects.create(
        profile_a=people[0], profile_b=people[1], score=48.5, probability=1 - 2.5e-13
    )
    less_likely = DuplicateCandidate.objects.create(
        profile_a=people[2], profile_b=people[3], score=22.1, probability=1 - 2.2e-6
    )
    decided = DuplicateCandidate.objects.create(
        profile_a=people[0],
        profile_b=people[3],
        score=60.0,
        probability=1.0,
        status=DuplicateCandidate.Status.REJECTED,
    )

    # when
    response = staff.get("/admin/identity/duplicatecandidate/")

    # then each shows its own weight and probability, and the queue puts the pending
    # pairs first, the likelier first
    page = response.content.decode()
    assert response.status_code == 200
    assert "+48.5" in page and "+22.1" in page
    assert "1 \N{MINUS SIGN} 2.5e-13" in page and "1 \N{MINUS SIGN} 2.2e-6" in page
    assert "100.0%" not in page
    assert list(response.context["cl"].result_list) == [likelier, less_likely, decided]

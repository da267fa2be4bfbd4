"""The consent log is append-only on PostgreSQL, follows merges and comes back on split."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from apps.consent.models import ConsentRecord, ConsentState
from apps.consent.selectors import has_consent
from apps.consent.services import consent_grant, consent_withdraw
from apps.consent.services.erasure import consent_log_unlocked
from apps.identity.models import ProfileMerge
from apps.identity.services import profile_merge, profile_split

pytestmark = pytest.mark.django_db

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the append-only trigger is PostgreSQL's"
)


@postgres_only
def test_postgresql_refuses_update_and_delete(make_purpose: Any, make_profile: Any) -> None:
    make_purpose("ads")
    person = make_profile(("user_id", "u1"))
    record = consent_grant(profile_id=person.id, purpose="ads", source="api")
    for statement in (
        "UPDATE consent_consentrecord SET status = 'denied' WHERE id = %s",
        "UPDATE consent_consentrecord SET given_at = now() WHERE id = %s",
        "DELETE FROM consent_consentrecord WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement, [record.id])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        ConsentRecord.objects.filter(pk=record.pk).update(method="changed")
    record.refresh_from_db()
    assert (record.status, record.method) == ("granted", "")


def _erasure_in_progress(*profile_ids: Any) -> Any:
    from apps.consent.models import DataSubjectRequest

    return DataSubjectRequest.objects.create(
        type="erasure",
        subject="user_id:someone",
        received_at=timezone.now(),
        due_date=timezone.localdate(),
        status="in_progress",
        work_state={"step": "records", "profile_ids": [str(p) for p in profile_ids]},
    )


@postgres_only
def test_only_an_erasure_in_progress_of_that_person_may_delete(
    make_purpose: Any, make_profile: Any
) -> None:
    make_purpose("ads")
    person = make_profile(("user_id", "u1"))
    other = make_profile(("user_id", "u2"))
    record = consent_grant(profile_id=person.id, purpose="ads", source="api")
    # the erasure path's flag alone opens nothing (any session can set it)...
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL cdp.erasure = 'on'")
        ConsentRecord.objects.filter(pk=record.pk).delete()
    with pytest.raises(DatabaseError, match="append-only"), consent_log_unlocked():
        ConsentRecord.objects.filter(pk=record.pk).delete()
    # ...nor does an erasure of someone else
    _erasure_in_progress(other.id)
    with pytest.raises(DatabaseError, match="append-only"), consent_log_unlocked():
        ConsentRecord.objects.filter(pk=record.pk).delete()
    assert ConsentRecord.objects.filter(pk=record.pk).exists()
    # an erasure in progress that names the person, through the erasure path, may
    request = _erasure_in_progress(person.id)
    with consent_log_unlocked():
        ConsentRecord.objects.filter(pk=record.pk).delete()
    assert not ConsentRecord.objects.filter(pk=record.pk).exists()
    # and not outside that path, nor once the request is no longer in progress
    again = consent_grant(profile_id=person.id, purpose="ads", source="api")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        ConsentRecord.objects.filter(pk=again.pk).delete()
    type(request).objects.filter(pk=request.pk).update(status="completed")
    with pytest.raises(DatabaseError, match="append-only"), consent_log_unlocked():
        ConsentRecord.objects.filter(pk=again.pk).delete()


@postgres_only
def test_postgresql_refuses_truncate(make_purpose: Any, make_profile: Any) -> None:
    make_purpose("ads")
    person = make_profile(("user_id", "u1"))
    consent_grant(profile_id=person.id, purpose="ads", source="api")
    with (
        pytest.raises(DatabaseError, match="append-only: TRUNCATE refused"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no foreign key checks pending
        cursor.execute("TRUNCATE consent_consentstate, consent_consentrecord")
    assert ConsentRecord.objects.count() == 1


@postgres_only
def test_a_record_moves_to_another_profile_only_along_a_merge_or_split(
    make_purpose: Any, make_profile: Any
) -> None:
    make_purpose("ads")
    ada = make_profile(("email", "ada@example.com"))
    anon = make_profile(("anonymous_id", "anon-1"))
    stranger = make_profile(("user_id", "stranger"))
    consent_grant(profile_id=ada.id, purpose="ads", source="api")
    withdrawal = consent_withdraw(profile_id=anon.id, purpose="ads", source="event")

    def move(record_id: int, to: Any) -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "UPDATE consent_consentrecord SET profile_id = %s WHERE id = %s", [to, record_id]
            )

    # not to an unrelated profile
    with pytest.raises(DatabaseError, match="append-only"):
        move(withdrawal.id, stranger.id)
    # along a merge, yes (profile_merge does it)
    merge = profile_merge(
        profile_ids=(ada.id, anon.id), reason=ProfileMerge.Reason.ADMIN, details={}
    )
    assert (merge.survivor_id, merge.absorbed_id) == (ada.id, anon.id)
    assert ConsentRecord.objects.filter(profile=ada).count() == 2
    # back to the absorbed profile: only the statements made for it (a split)
    own = ConsentRecord.objects.get(profile=ada, origin_profile_id=ada.id)
    with pytest.raises(DatabaseError, match="append-only"):
        move(own.id, anon.id)
    with pytest.raises(DatabaseError, match="append-only"):
        move(withdrawal.id, stranger.id)
    move(withdrawal.id, anon.id)
    assert ConsentRecord.objects.get(pk=withdrawal.pk).profile_id == anon.id


def test_merge_keeps_both_logs_and_split_gives_them_back(
    make_purpose: Any, make_profile: Any
) -> None:
    # given: two records of one person, each with statements
    make_purpose("ads")
    make_purpose("email")
    older = make_profile(("email", "ada@example.com"))
    newer = make_profile(("anonymous_id", "anon-1"))
    consent_grant(profile_id=older.id, purpose="email", source="api")
    consent_grant(profile_id=newer.id, purpose="ads", source="event")
    consent_withdraw(profile_id=newer.id, purpose="email", source="event")
    # when: they merge
    merge = profile_merge(
        profile_ids=(older.id, newer.id), reason=ProfileMerge.Reason.ADMIN, details={}
    )
    survivor = merge.survivor
    # then: the survivor holds both logs; its state is the latest statement of either
    assert ConsentRecord.objects.filter(profile=survivor).count() == 3
    assert has_consent(survivor, "ads") is True
    assert has_consent(survivor, "email") is False
    assert not ConsentState.objects.filter(profile=merge.absorbed).exists()
    # when: it is split again
    profile_split(profile_id=merge.absorbed_id)
    # then: each has its own statements and state back
    assert ConsentRecord.objects.filter(profile=older).count() == 1
    assert ConsentRecord.objects.filter(profile=newer).count() == 2
    assert has_consent(older, "email") is True
    assert has_consent(older, "ads") is False
    assert has_consent(newer, "ads") is True


def test_bulk_merges_move_consent_and_events_too(
    make_purpose: Any, make_profile: Any, post_events: Any
) -> None:
    # given: three pairs of profiles, the newer of each with statements and an event
    from apps.events.models import Event
    from apps.identity.services import MergeRequest, profile_merge_bulk

    make_purpose("ads")
    pairs = []
    for i in range(3):
        older = make_profile(("email", f"p{i}@example.com"))
        post_events(
            "/v1/track", {"anonymousId": f"anon-{i}", "event": "Seen", "messageId": f"m{i}"}
        )
        newer = Event.objects.get(message_id=f"m{i}").profile
        consent_grant(profile_id=newer.id, purpose="ads", source="event")
        pairs.append((older, newer))
    # when: the dedup merges them in one batch
    outcomes = profile_merge_bulk(
        requests=[MergeRequest(profile_ids=(a.id, b.id), details={}) for a, b in pairs],
        reason=ProfileMerge.Reason.MATCH_SCORE,
    )
    # then: each survivor holds the absorbed profile's log, state and events
    assert all(o.merge is not None for o in outcomes)
    for older, newer in pairs:
        assert ConsentRecord.objects.filter(profile=older).count() == 1
        assert has_consent(older, "ads") is True
        assert not ConsentState.objects.filter(profile=newer).exists()
        assert Event.objects.filter(profile=older).count() == 1
    # and a split gives them back
    profile_split(profile_id=pairs[1][1].id)
    assert has_consent(pairs[1][1], "ads") is True
    assert has_consent(pairs[1][0], "ads") is False


def test_an_admin_who_entered_consent_cannot_be_deleted_only_deactivated(
    make_purpose: Any, make_profile: Any
) -> None:
    from django.contrib.auth import get_user_model
    from django.db.models import ProtectedError

    # given: a statement an admin entered
    make_purpose("ads")
    admin = get_user_model().objects.create_user("clerk", password="x", is_staff=True)
    ada = make_profile(("user_id", "ada"))
    record = consent_grant(profile_id=ada.id, purpose="ads", source="admin", entered_by=admin)
    # when / then: deleting the admin is refused (it would rewrite the log's proof)
    with pytest.raises(ProtectedError):
        admin.delete()
    record.refresh_from_db()
    assert record.entered_by_id == admin.id

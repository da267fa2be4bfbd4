"""The consent log is append-only on PostgreSQL, follows merges and comes back on split."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction

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


@postgres_only
def test_only_the_erasure_path_may_delete(make_purpose: Any, make_profile: Any) -> None:
    make_purpose("ads")
    person = make_profile(("user_id", "u1"))
    record = consent_grant(profile_id=person.id, purpose="ads", source="api")
    with consent_log_unlocked():
        ConsentRecord.objects.filter(pk=record.pk).delete()
    assert not ConsentRecord.objects.filter(pk=record.pk).exists()
    # the way through was for that block only
    again = consent_grant(profile_id=person.id, purpose="ads", source="api")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        ConsentRecord.objects.filter(pk=again.pk).delete()


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

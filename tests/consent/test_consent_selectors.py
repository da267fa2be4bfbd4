from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.consent.models import ConsentRecord, ConsentState, LegalBasis
from apps.consent.selectors import has_consent, profiles_with_consent, purpose_rule
from apps.consent.services import ConsentRefused, consent_grant, consent_record, consent_withdraw
from apps.identity.models import Profile

pytestmark = pytest.mark.django_db


def _record(profile: Any, purpose: str, status: str, days_ago: float) -> None:
    consent_record(
        profile_id=profile.id,
        purpose=purpose,
        status=status,
        source="api",
        given_at=timezone.now() - timedelta(days=days_ago),
    )


def test_grant_then_withdraw_now_and_in_the_past(make_purpose: Any, make_profile: Any) -> None:
    # given
    make_purpose("marketing", legal_basis=LegalBasis.CONSENT)
    person = make_profile(("email", "ada@example.com"))
    _record(person, "marketing", "granted", days_ago=10)
    _record(person, "marketing", "withdrawn", days_ago=2)
    # then: the log answers for any time; the state for now
    now = timezone.now()
    assert has_consent(person, "marketing") is False
    assert has_consent(person, "marketing", at=now - timedelta(days=5)) is True
    assert has_consent(person, "marketing", at=now - timedelta(days=11)) is False
    assert ConsentRecord.objects.filter(profile=person).count() == 2
    assert ConsentState.objects.get(profile=person).status == "withdrawn"


def test_expiry_lapses_a_grant(make_purpose: Any, make_profile: Any) -> None:
    make_purpose("marketing", expiry_days=30)
    person = make_profile(("user_id", "u1"))
    _record(person, "marketing", "granted", days_ago=31)
    assert has_consent(person, "marketing") is False
    assert has_consent(person, "marketing", at=timezone.now() - timedelta(days=2)) is True
    # a fresh grant counts again
    _record(person, "marketing", "granted", days_ago=0)
    assert has_consent(person, "marketing") is True


def test_defaults_and_required_purposes(make_purpose: Any, make_profile: Any) -> None:
    make_purpose("fraud", legal_basis=LegalBasis.LEGITIMATE_INTEREST, default_granted=True)
    make_purpose("service", legal_basis=LegalBasis.CONTRACT, required=True)
    make_purpose("ads")
    person = make_profile(("user_id", "u1"))
    assert has_consent(person, "fraud") is True
    assert has_consent(person, "service") is True
    assert has_consent(person, "ads") is False
    # an objection to a legitimate interest
    _record(person, "fraud", "denied", days_ago=0)
    assert has_consent(person, "fraud") is False
    # a required purpose cannot be withdrawn, and nothing is recorded
    with pytest.raises(ConsentRefused, match="required"):
        consent_withdraw(profile_id=person.id, purpose="service", source="api")
    assert not ConsentRecord.objects.filter(purpose__key="service").exists()


@pytest.mark.parametrize("default_granted", [False, True])
@pytest.mark.parametrize("expiry_days", [None, 30])
def test_filter_agrees_with_the_selector_for_every_kind_of_history(
    make_purpose: Any, make_profile: Any, default_granted: bool, expiry_days: int | None
) -> None:
    # given: people with every kind of history for one purpose
    make_purpose("p", default_granted=default_granted, expiry_days=expiry_days)
    histories: list[list[tuple[str, float]]] = [
        [],
        [("granted", 1)],
        [("granted", 40)],
        [("denied", 1)],
        [("granted", 20), ("withdrawn", 5)],
        [("withdrawn", 20), ("granted", 5)],
        [("denied", 50), ("granted", 35)],
    ]
    people = []
    for i, history in enumerate(histories):
        person = make_profile(("user_id", f"user-{i}"))
        for status, days in history:
            _record(person, "p", status, days_ago=days)
        people.append(person)
    for at in (None, timezone.now() - timedelta(days=10), timezone.now() - timedelta(days=45)):
        # when
        kept = set(
            profiles_with_consent(Profile.objects.all(), "p", at=at).values_list("id", flat=True)
        )
        # then: the queryset filter keeps exactly those the selector allows
        expected = {p.id for p in people if has_consent(p, "p", at=at)}
        assert kept == expected, at


def test_filter_is_one_query(
    make_purpose: Any, make_profile: Any, django_assert_num_queries: Any
) -> None:
    make_purpose("p")
    for i in range(5):
        person = make_profile(("user_id", f"u{i}"))
        if i % 2:
            consent_grant(profile_id=person.id, purpose="p", source="api")
    rule = purpose_rule("p")  # cached per process outside tests
    with django_assert_num_queries(1):
        ids = list(profiles_with_consent(Profile.objects.all(), rule).values_list("id", flat=True))
    assert len(ids) == 2


def test_uses_need_every_purpose_that_gates_them(make_purpose: Any, make_profile: Any) -> None:
    from apps.consent.selectors import may_use, profiles_for_use

    make_purpose("personalization", gates_personalization=True)
    make_purpose("advertising", gated_destinations=["optimizely", "webhook"])
    make_purpose("sale", gated_destinations=["optimizely"], default_granted=True)
    ada = make_profile(("user_id", "ada"))
    bob = make_profile(("user_id", "bob"))
    for purpose in ("personalization", "advertising"):
        consent_grant(profile_id=ada.id, purpose=purpose, source="api")
    consent_grant(profile_id=bob.id, purpose="advertising", source="api")
    consent_record(profile_id=bob.id, purpose="sale", status="denied", source="gpc")
    assert may_use(ada, "personalization") and not may_use(bob, "personalization")
    assert may_use(ada, "destination:optimizely") and not may_use(bob, "destination:optimizely")
    assert may_use(bob, "destination:webhook")
    assert may_use(bob, "destination:unknown-tool")  # nothing gates it
    everyone = Profile.objects.all()
    assert list(profiles_for_use(everyone, "destination:optimizely")) == [ada]
    assert set(profiles_for_use(everyone, "destination:webhook")) == {ada, bob}
    with pytest.raises(ValueError, match="Unknown use"):
        may_use(ada, "telepathy")


def test_a_past_moment_is_answered_with_the_expiry_then_in_force(
    make_purpose: Any, make_profile: Any
) -> None:
    from apps.consent.models import Purpose

    now = timezone.now()
    # given: grants lapsed after 30 days until 5 days ago, after 10 since
    purpose = make_purpose("ads", expiry_days=30)
    history = Purpose.history.model  # type: ignore[attr-defined]
    history.objects.filter(id=purpose.id).update(history_date=now - timedelta(days=60))
    purpose.expiry_days = 10
    purpose.save()
    history.objects.filter(id=purpose.id, expiry_days=10).update(
        history_date=now - timedelta(days=5)
    )
    ann = make_profile(("user_id", "ann"))
    consent_record(
        profile_id=ann.id,
        purpose="ads",
        status="granted",
        source="api",
        given_at=now - timedelta(days=20),
    )
    ten_days_ago = now - timedelta(days=10)
    # then: ten days ago her 10-day-old grant was valid (30 days then)...
    assert has_consent(ann, "ads", at=ten_days_ago) is True
    assert list(profiles_with_consent(Profile.objects.all(), "ads", at=ten_days_ago)) == [ann]
    # ...and now it has lapsed (10 days now)
    assert has_consent(ann, "ads") is False
    assert has_consent(ann, "ads", at=now) is False
    assert list(profiles_with_consent(Profile.objects.all(), "ads", at=now)) == []

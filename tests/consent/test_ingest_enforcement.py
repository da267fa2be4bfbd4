"""Consent and suppression at ingestion: what a person refused is not stored."""

from __future__ import annotations

from typing import Any

import pytest

from apps.consent.models import ConsentRecord
from apps.consent.selectors import has_consent
from apps.consent.services import consent_grant, consent_withdraw
from apps.events.models import Event
from apps.identity.selectors import profile_get_by_external_id

pytestmark = pytest.mark.django_db


def _track(user: str, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Product Viewed",
        "userId": user,
        "messageId": f"{user}-{n}",
        "properties": {"product_id": "p1"},
        "context": {"ip": "203.0.113.9", "traits": {"email": f"{user}@example.com"}},
        **extra,
    }


def test_without_storage_purposes_everything_is_stored(post_events: Any) -> None:
    response = post_events("/v1/batch", {"batch": [_track("u1", 1), _track("u2", 1)]})
    assert response.status_code == 200
    assert Event.objects.count() == 2


def test_drop_policy_and_a_withdrawal_taking_effect_on_the_next_event(
    post_events: Any, storage_purpose: Any, make_profile: Any
) -> None:
    # given: one person granted the storing purpose, another never did
    ada = make_profile(("user_id", "ada"))
    consent_grant(profile_id=ada.id, purpose="analytics", source="api")
    # when
    response = post_events("/v1/batch", {"batch": [_track("ada", 1), _track("bob", 1)]})
    # then: the answer is Segment's; only Ada's event is kept
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert list(Event.objects.values_list("user_id", flat=True)) == ["ada"]
    # when: Ada withdraws through the API, then sends the next event
    consent_withdraw(profile_id=ada.id, purpose="analytics", source="api")
    post_events("/v1/track", _track("ada", 2))
    # then: it is not stored
    assert Event.objects.filter(user_id="ada").count() == 1


def test_anonymize_policy_stores_the_behaviour_without_the_person(
    post_events: Any, storage_purpose: Any
) -> None:
    storage_purpose.storage_policy = "anonymize"
    storage_purpose.save()
    viewed = _track("bob", 1)
    viewed["properties"] = {
        "product_id": "p1",
        "price": 12.5,
        "email": "bob@example.com",
        "Customer-Phone": "+1 415 555 0100",
        "shipping": {"firstName": "Bob", "street_address": "1 Elm St", "method": "express"},
        "url": "https://shop.example.com/p1?email=bob%40example.com#top",
        "note": "call bob@example.com",
    }
    viewed["integrations"] = {"All": True}
    viewed["customer"] = {"name": "Bob"}
    response = post_events(
        "/v1/batch",
        {
            "batch": [
                viewed,
                {"type": "identify", "userId": "bob", "traits": {"email": "bob@example.com"}},
            ]
        },
    )
    assert response.status_code == 200
    # the track event is kept without ids, traits, identifying context, personal
    # properties or the client's extra keys; the identify (nothing but personal
    # data) is dropped
    event = Event.objects.get()
    assert (event.type, event.event, event.user_id, event.anonymous_id) == (
        "track",
        "Product Viewed",
        "",
        "",
    )
    assert event.properties == {
        "product_id": "p1",
        "price": 12.5,
        "shipping": {"method": "express"},
        "url": "https://shop.example.com/p1",
    }
    assert event.traits == {}
    assert event.extra == {}
    assert "ip" not in event.context and "traits" not in event.context
    assert event.profile_id is None and event.processed_at is not None


def test_anonymize_policy_keeps_only_the_purposes_allow_list(
    post_events: Any, storage_purpose: Any
) -> None:
    # given: the purpose names the properties an anonymized event keeps
    storage_purpose.storage_policy = "anonymize"
    storage_purpose.anonymized_properties = ["product_id", "page"]
    storage_purpose.full_clean()
    storage_purpose.save()
    viewed = _track("bob", 1)
    viewed["properties"] = {
        "product_id": "p1",
        "coupon": "BOB-SPECIAL",
        "page": "https://shop.example.com/x?ref=bob",
    }
    # when
    post_events("/v1/track", viewed)
    # then
    assert Event.objects.get().properties == {
        "product_id": "p1",
        "page": "https://shop.example.com/x",
    }


def test_consent_carried_by_events_is_recorded_with_proof_and_governs_them(
    post_events: Any, storage_purpose: Any, make_purpose: Any
) -> None:
    make_purpose("advertising", categories=["Advertising", "C0004"])
    consent = {"categoryPreferences": {"Analytics": True, "Advertising": False}}
    first = _track("cara", 1)
    first["context"] = {
        **first["context"],
        "consent": consent,
        "userAgent": "Mozilla/5.0 test",
        "page": {"url": "https://shop.example.com/cart"},
    }
    # when: the first event of a new visitor carries her preferences
    response = post_events("/v1/batch", {"batch": [first]})
    assert response.status_code == 200
    # then: it is stored (analytics granted) and the statements are in the log
    assert Event.objects.filter(user_id="cara").count() == 1
    cara = profile_get_by_external_id(external_id="user_id:cara")
    assert has_consent(cara, "analytics") is True
    assert has_consent(cara, "advertising") is False
    records = {r.purpose.key: r for r in ConsentRecord.objects.filter(profile=cara)}
    assert {k: r.status for k, r in records.items()} == {
        "analytics": "granted",
        "advertising": "denied",
    }
    proof = records["analytics"]
    assert proof.source == "event"
    assert proof.event_message_id == "cara-1"
    assert proof.page_url == "https://shop.example.com/cart"
    assert proof.user_agent == "Mozilla/5.0 test"
    assert proof.notice_version == "v3" and len(proof.notice_hash) == 64
    assert proof.ip_hash and "203.0.113.9" not in proof.ip_hash
    # when: the same preferences come again (analytics.js sends them on every event)
    again = _track("cara", 2)
    again["context"] = {**again["context"], "consent": consent}
    post_events("/v1/track", again)
    # then: nothing new is recorded
    assert ConsentRecord.objects.filter(profile=cara).count() == 2
    # when: she withdraws analytics in the consent manager ("Segment Consent
    # Preference Updated") and browses on
    update = {
        "type": "track",
        "event": "Segment Consent Preference Updated",
        "userId": "cara",
        "messageId": "cara-3",
        "context": {"consent": {"categoryPreferences": {"Analytics": False}}},
    }
    post_events("/v1/batch", {"batch": [update, _track("cara", 4)]})
    # then: a withdrawal is recorded and neither event is stored
    assert ConsentRecord.objects.filter(
        profile=cara, purpose__key="analytics", status="withdrawn"
    ).exists()
    assert set(Event.objects.filter(user_id="cara").values_list("message_id", flat=True)) == {
        "cara-1",
        "cara-2",
    }


def test_global_privacy_control_header_opts_out_of_sale(
    post_events: Any, make_purpose: Any, make_profile: Any
) -> None:
    make_purpose("sale", gpc_opt_out=True, default_granted=True, name="Sale or sharing")
    dan = make_profile(("user_id", "dan"))
    assert has_consent(dan, "sale") is True
    response = post_events("/v1/track", _track("dan", 1), HTTP_SEC_GPC="1")
    assert response.status_code == 200
    assert has_consent(dan, "sale") is False
    record = ConsentRecord.objects.get(profile=dan)
    assert (record.status, record.source) == ("denied", "gpc")
    # the event itself is stored: sale does not gate storage
    assert Event.objects.filter(user_id="dan").count() == 1
    # repeated signals add nothing
    post_events("/v1/track", _track("dan", 2), HTTP_SEC_GPC="1")
    assert ConsentRecord.objects.filter(profile=dan).count() == 1


def _with_prefs(event: dict[str, Any], **prefs: bool) -> dict[str, Any]:
    event["context"] = {**event["context"], "consent": {"categoryPreferences": prefs}}
    return event


def _log(profile: Any) -> list[tuple[str, str, str]]:
    return list(
        ConsentRecord.objects.filter(profile=profile)
        .order_by("given_at", "id")
        .values_list("purpose__key", "status", "source")
    )


def test_a_stale_cookie_answer_does_not_reverse_an_api_withdrawal(
    post_events: Any, storage_purpose: Any
) -> None:
    # given: Ada's cookie banner said yes, then she withdrew through the API
    post_events("/v1/track", _with_prefs(_track("ada", 1), Analytics=True))
    ada = profile_get_by_external_id(external_id="user_id:ada")
    consent_withdraw(profile_id=ada.id, purpose="analytics", source="api")
    # when: her browser sends the next event with the same (stale) cookie
    response = post_events("/v1/track", _with_prefs(_track("ada", 2), Analytics=True))
    # then: nothing is recorded, she has not consented, the event is not stored
    assert response.status_code == 200
    assert _log(ada) == [("analytics", "granted", "event"), ("analytics", "withdrawn", "api")]
    assert has_consent(ada, "analytics") is False
    assert list(Event.objects.values_list("message_id", flat=True)) == ["ada-1"]


def test_a_passive_yes_never_overrides_an_objection(
    post_events: Any, storage_purpose: Any, make_profile: Any
) -> None:
    from apps.consent.services.dsr import dsr_create, dsr_object, dsr_transition

    # given: Bob objected (a data-subject request); no event ever spoke for him
    bob = make_profile(("user_id", "bob"))
    request = dsr_create(type="objection", subject="user_id:bob")
    dsr_transition(request=request, status="verified")
    dsr_object(request=request, purposes=["analytics"])
    # when: an event comes with a cookie that says yes
    post_events("/v1/track", _with_prefs(_track("bob", 1), Analytics=True))
    # then: the objection stands
    assert _log(bob) == [("analytics", "denied", "admin")]
    assert has_consent(bob, "analytics") is False
    assert Event.objects.count() == 0


def test_an_explicit_preference_update_is_the_persons_new_choice(
    post_events: Any, storage_purpose: Any
) -> None:
    # given: Cy said yes in the banner, then withdrew through the API
    post_events("/v1/track", _with_prefs(_track("cy", 1), Analytics=True))
    cy = profile_get_by_external_id(external_id="user_id:cy")
    consent_withdraw(profile_id=cy.id, purpose="analytics", source="api")
    # when: she opens the consent manager and says yes again, then browses on
    update = _with_prefs(
        _track("cy", 2, event="Segment Consent Preference Updated"), Analytics=True
    )
    post_events("/v1/batch", {"batch": [update, _with_prefs(_track("cy", 3), Analytics=True)]})
    # then: her new choice is recorded (once) and governs both events
    assert _log(cy) == [
        ("analytics", "granted", "event"),
        ("analytics", "withdrawn", "api"),
        ("analytics", "granted", "event"),
    ]
    latest = ConsentRecord.objects.filter(profile=cy).order_by("-id").first()
    assert latest is not None and latest.method == "Segment Consent Preference Updated"
    assert has_consent(cy, "analytics") is True
    assert set(Event.objects.values_list("message_id", flat=True)) == {"cy-1", "cy-2", "cy-3"}


def test_a_changed_cookie_answer_is_recorded_each_time_it_changes(
    post_events: Any, storage_purpose: Any
) -> None:
    post_events("/v1/track", _with_prefs(_track("dee", 1), Analytics=True))
    post_events("/v1/track", _with_prefs(_track("dee", 2), Analytics=True))
    post_events("/v1/track", _with_prefs(_track("dee", 3), Analytics=False))
    post_events("/v1/track", _with_prefs(_track("dee", 4), Analytics=False))
    post_events("/v1/track", _with_prefs(_track("dee", 5), Analytics=True))
    dee = profile_get_by_external_id(external_id="user_id:dee")
    assert _log(dee) == [
        ("analytics", "granted", "event"),
        ("analytics", "withdrawn", "event"),
        ("analytics", "granted", "event"),
    ]
    assert set(Event.objects.values_list("message_id", flat=True)) == {"dee-1", "dee-2", "dee-5"}


def test_an_event_that_says_no_is_not_stored_even_when_a_later_grant_allows(
    post_events: Any, storage_purpose: Any
) -> None:
    # given: the banner said no; later Eve granted at signup (API)
    post_events("/v1/track", _with_prefs(_track("eve", 1), Analytics=False))
    eve = profile_get_by_external_id(external_id="user_id:eve")
    consent_grant(profile_id=eve.id, purpose="analytics", source="api")
    # when: an event still carries the banner's old no
    post_events("/v1/track", _with_prefs(_track("eve", 2), Analytics=False))
    # then: the grant stands (the cookie did not change) but this event is not kept
    assert _log(eve) == [("analytics", "denied", "event"), ("analytics", "granted", "api")]
    assert has_consent(eve, "analytics") is True
    assert Event.objects.count() == 0
    # and an event without a consent context is kept
    post_events("/v1/track", _track("eve", 3))
    assert list(Event.objects.values_list("message_id", flat=True)) == ["eve-3"]


@pytest.mark.parametrize("granted_by", ["event", "api"])
def test_a_lapsed_grant_is_renewed_by_an_event_that_grants(
    post_events: Any, make_purpose: Any, make_profile: Any, granted_by: str
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from apps.consent.services import consent_record

    # given: Finn granted 40 days ago; grants lapse after 30
    make_purpose("ads", expiry_days=30, categories=["Advertising"])
    finn = make_profile(("user_id", "finn"))
    consent_record(
        profile_id=finn.id,
        purpose="ads",
        status="granted",
        source=granted_by,
        given_at=timezone.now() - timedelta(days=40),
    )
    assert has_consent(finn, "ads") is False
    # when: his cookie still says yes
    post_events("/v1/track", _with_prefs(_track("finn", 1), Advertising=True))
    # then: the grant is renewed
    assert _log(finn) == [("ads", "granted", granted_by), ("ads", "granted", "event")]
    assert has_consent(finn, "ads") is True
    # and the next event with the same answer adds nothing
    post_events("/v1/track", _with_prefs(_track("finn", 2), Advertising=True))
    assert ConsentRecord.objects.filter(profile=finn).count() == 2


@pytest.mark.parametrize(
    ("stored_as", "sent_as", "normalization"),
    [("gus", "  gus ", "exact"), ("Gus", "GUS", "lowercase")],
)
def test_the_gate_finds_people_by_their_normalized_ids(
    post_events: Any,
    make_purpose: Any,
    make_profile: Any,
    stored_as: str,
    sent_as: str,
    normalization: str,
) -> None:
    from apps.identity.models import IdentifierTypeConfig

    # given: storage is allowed by default (legitimate interest); Gus objected
    IdentifierTypeConfig.objects.update_or_create(
        key="user_id",
        defaults={"label": "User id", "priority": 0, "normalization": normalization},
    )
    make_purpose(
        "analytics",
        gates_storage=True,
        default_granted=True,
        legal_basis="legitimate_interest",
    )
    gus = make_profile(("user_id", stored_as))
    consent_withdraw(profile_id=gus.id, purpose="analytics", source="api")
    # when: his app sends his id as the SDK got it
    post_events("/v1/track", {"userId": sent_as, "event": "Opened", "messageId": "g1"})
    # then: the gate knows him: the event is dropped
    assert Event.objects.count() == 0


def test_a_person_erased_while_the_gate_reads_costs_the_batch_nothing(
    post_events: Any, make_purpose: Any, make_profile: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apps.consent.services import ingest
    from apps.identity.models import Profile

    # given: Ada is erased between the gate's read of who she is and its write of
    # the consent her event states
    make_purpose("analytics", categories=["Analytics"])
    ada = make_profile(("user_id", "ada"))
    read = ingest._owners_and_states

    def erased_meanwhile(*args: Any, **kwargs: Any) -> Any:
        found = read(*args, **kwargs)
        Profile.objects.filter(pk=ada.pk).delete()
        return found

    monkeypatch.setattr(ingest, "_owners_and_states", erased_meanwhile)
    context = {"consent": {"categoryPreferences": {"Analytics": True}}}
    # when
    response = post_events(
        "/v1/batch",
        {
            "batch": [
                {
                    "type": "track",
                    "userId": "ada",
                    "event": "E",
                    "messageId": "a1",
                    "context": context,
                },
                {"type": "track", "userId": "bob", "event": "E", "messageId": "b1"},
            ]
        },
    )
    # then: the batch is answered and stored; her statement is not recorded
    assert response.status_code == 200
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["a1", "b1"]
    assert ConsentRecord.objects.count() == 0

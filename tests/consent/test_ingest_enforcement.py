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
    response = post_events(
        "/v1/batch",
        {
            "batch": [
                _track("bob", 1),
                {"type": "identify", "userId": "bob", "traits": {"email": "bob@example.com"}},
            ]
        },
    )
    assert response.status_code == 200
    # the track event is kept without ids, traits or identifying context; the
    # identify (nothing but personal data) is dropped
    event = Event.objects.get()
    assert (event.type, event.event, event.user_id, event.anonymous_id) == (
        "track",
        "Product Viewed",
        "",
        "",
    )
    assert event.properties == {"product_id": "p1"}
    assert event.traits == {}
    assert "ip" not in event.context and "traits" not in event.context
    assert event.profile_id is None and event.processed_at is not None


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

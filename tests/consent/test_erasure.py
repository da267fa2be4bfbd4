"""Erasure removes a person from every table, provably, and keeps them out."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import connection

from apps.consent.models import DataSubjectRequest, ErasureHookOutcome, SuppressionEntry
from apps.consent.registry import deletion_hooks
from apps.consent.services import consent_grant
from apps.consent.services.dsr import dsr_create, dsr_extend, dsr_progress, dsr_transition
from apps.consent.services.erasure import erasure_run, erasure_start
from apps.events.models import Event
from apps.identity.dedup.models import DuplicateCandidate
from apps.identity.models import IdentityConflict, Profile, ProfileMerge
from apps.identity.selectors import profile_get_by_external_id
from apps.identity.services import profile_merge
from tests.registry import registered

pytestmark = pytest.mark.django_db

# Everything that identifies Erin, as she sent it and as it is normalized.
ERIN = {
    "user_id": "erin-7731",
    "email_raw": "Erin.Quarrington@Example.COM",
    "email": "erin.quarrington@example.com",
    "phone_raw": "(415) 555-0199",
    "phone": "+14155550199",
    "anon_web": "anon-erin-web-5d1f",
    "anon_app": "anon-erin-app-88c2",
    "first_name": "Erinyes",
    "last_name": "Quarrington",
    "street": "17 Wombat Lane",
}
OTHER = {"user_id": "olaf-1", "email": "olaf@example.com", "last_name": "Mickelborough"}


def _scan(needles: list[str]) -> dict[str, list[str]]:
    """Every table and column in the database (by introspection) holding a needle."""
    hits: dict[str, list[str]] = {}
    introspection = connection.introspection
    with connection.cursor() as cursor:
        for table in introspection.table_names(cursor):
            for column in introspection.get_table_description(cursor, table):
                qn = connection.ops.quote_name
                if connection.vendor == "postgresql":
                    expr = f"{qn(column.name)}::text"
                else:
                    expr = f"CAST({qn(column.name)} AS TEXT)"
                for needle in needles:
                    cursor.execute(
                        f"SELECT 1 FROM {qn(table)} WHERE LOWER({expr}) LIKE %s LIMIT 1",
                        [f"%{needle.lower()}%"],
                    )
                    if cursor.fetchone():
                        hits.setdefault(f"{table}.{column.name}", []).append(needle)
    return hits


@pytest.fixture(params=["owner", "application role"])
def connected_as(request: pytest.FixtureRequest) -> str:
    """Each test with Erin runs twice: connected as the tables' owner, and as the
    application's own role (production), which must be able to do all of it."""
    if request.param == "application role":
        request.getfixturevalue("as_application_role")
    return str(request.param)


@pytest.fixture
def erin(connected_as: str, post_events: Any, make_purpose: Any, admin_client: Any) -> Profile:
    """Erin, with events, merges, consents, a dedup candidate, a conflict, refused
    payloads, an anonymized event, an earlier access request (with its history,
    extension and notes naming her) and admin log entries about her profile, the
    candidate and the conflict."""
    make_purpose("marketing")
    make_purpose(
        "analytics",
        gates_storage=True,
        storage_policy="anonymize",
        default_granted=True,
        legal_basis="legitimate_interest",
        categories=["Analytics"],
    )
    traits = {
        "email": ERIN["email_raw"],
        "phone": ERIN["phone_raw"],
        "firstName": ERIN["first_name"],
        "lastName": ERIN["last_name"],
        "address": {"street": ERIN["street"], "city": "Springfield"},
    }
    batch = [
        {"type": "page", "anonymousId": ERIN["anon_web"], "name": "Home", "messageId": "e1"},
        {
            "type": "track",
            "anonymousId": ERIN["anon_web"],
            "event": "Product Viewed",
            "properties": {"product_id": "sku-1"},
            "messageId": "e2",
        },
        {
            "type": "identify",
            "anonymousId": ERIN["anon_web"],
            "userId": ERIN["user_id"],
            "traits": traits,
            "messageId": "e3",
        },
        {"type": "screen", "anonymousId": ERIN["anon_app"], "name": "Cart", "messageId": "e4"},
        {
            "type": "alias",
            "previousId": ERIN["anon_app"],
            "userId": ERIN["user_id"],
            "messageId": "e5",
        },
        # refused (no event name) and kept in the rejected log with her email in it,
        # also in other letter cases
        {"type": "track", "userId": ERIN["user_id"], "properties": {"email": ERIN["email"]}},
        {"type": "track", "userId": "someone", "properties": {"mail": ERIN["email"].upper()}},
        {"type": "track", "userId": ERIN["user_id"].upper(), "event": ""},
        # an app that names her by email in context.externalIds
        {
            "type": "track",
            "anonymousId": ERIN["anon_web"],
            "event": "Signed In",
            "context": {"externalIds": [{"type": "email", "id": ERIN["email_raw"]}]},
            "messageId": "e6",
        },
        {
            "type": "identify",
            "userId": OTHER["user_id"],
            "traits": {"email": OTHER["email"], "lastName": OTHER["last_name"]},
            "messageId": "o1",
        },
    ]
    assert post_events("/v1/batch", {"batch": batch}).status_code == 200
    profile = profile_get_by_external_id(external_id=f"email:{ERIN['email']}")
    assert profile is not None
    assert ProfileMerge.objects.filter(survivor=profile).exists()  # anonymous ids merged
    # a profile the dedup found as a possible duplicate of her, merged by an admin
    twin = Profile.objects.create(
        traits={"firstName": ERIN["first_name"], "lastName": "Quaringten"}
    )
    profile_merge(profile_ids=(profile.id, twin.id), reason="admin", details={"note": "twin"})
    olaf = profile_get_by_external_id(external_id=f"user_id:{OTHER['user_id']}")
    assert olaf is not None
    a, b = sorted([profile, olaf], key=lambda p: str(p.id))
    DuplicateCandidate.objects.create(
        profile_a=a,
        profile_b=b,
        score=3.5,
        evidence={"fields": {"lastName": {"values": [ERIN["last_name"], OTHER["last_name"]]}}},
    )
    conflict = IdentityConflict.objects.create(
        profile=olaf, identifier_type="phone", identifier_value=ERIN["phone"], rule="cap"
    )
    candidate = DuplicateCandidate.objects.get()
    # an event her browser sent after refusing analytics: stored without her
    refused = {
        "type": "track",
        "anonymousId": ERIN["anon_web"],
        "event": "Checkout Started",
        "messageId": "e7",
        "properties": {
            "email": ERIN["email"],
            "shipping": {"street": ERIN["street"], "method": "express"},
            "url": f"https://shop.example.com/checkout?email={ERIN['email']}&n={ERIN['last_name']}",
            "customer_name": f"{ERIN['first_name']} {ERIN['last_name']}",
        },
        "context": {
            "consent": {"categoryPreferences": {"Analytics": False}},
            "traits": {"email": ERIN["email"], "lastName": ERIN["last_name"]},
        },
    }
    assert post_events("/v1/track", refused).status_code == 200
    consent_grant(
        profile_id=profile.id,
        purpose="marketing",
        source="api",
        page_url=f"https://shop.example.com/signup?email={ERIN['email']}",
        user_agent="Mozilla/5.0",
    )
    earlier = dsr_create(type="access", subject=f"email:{ERIN['email']}", details="Copy please")
    dsr_transition(request=earlier, status="verified", note=f"checked {ERIN['email']}")
    dsr_extend(
        request=earlier,
        months=1,
        reason=f"{ERIN['first_name']} {ERIN['last_name']} sent more documents",
    )
    dsr_progress(request_id=earlier.id, progress=50, note=f"letter to {ERIN['street']}")
    dsr_transition(  # its history row keeps that progress note
        request=earlier,
        status="in_progress",
        note=f"called Ms {ERIN['last_name']} back; spoke to {ERIN['first_name']}",
    )
    admin = get_user_model().objects.get(username="admin")
    for obj, text in ((profile, ERIN["email"]), (candidate, str(candidate)), (conflict, "")):
        LogEntry.objects.create(
            user=admin,
            content_type=ContentType.objects.get_for_model(obj),
            object_id=str(obj.pk),
            object_repr=text or str(obj),
            action_flag=CHANGE,
            change_message="looked at",
        )
    return profile


def test_erasure_leaves_nothing_of_the_person_anywhere(erin: Profile, post_events: Any) -> None:
    from apps.identity.selectors import profile_tree_ids

    profile_ids = [str(p) for p in profile_tree_ids(profile_id=erin.id)]
    assert len(profile_ids) == 3
    needles = [*ERIN.values(), *profile_ids]
    before = _scan(needles)
    # the scan does find her before: in events, identifiers, profiles, merges...
    assert {t.split(".")[0] for t in before} >= {
        "events_event",
        "events_rejectedevent",
        "identity_identifier",
        "identity_profile",
        "identity_profilemerge",
        "identity_identityconflict",
        "identity_duplicatecandidate",
        "consent_consentrecord",
        "consent_datasubjectrequest",
        "consent_historicaldatasubjectrequest",
        "consent_requestevent",
        "django_admin_log",
    }
    calls: list[list[tuple[str, str]]] = []

    def destination(identifiers: Any) -> str:
        calls.append(list(identifiers))
        return "ok"

    def broken(identifiers: Any) -> str:
        raise ConnectionError("destination down")

    with (
        registered(deletion_hooks, "test-destination", destination),
        registered(deletion_hooks, "test-broken", broken),
    ):
        # when: an erasure request goes from receipt to completion
        request = dsr_create(type="erasure", subject=f"email:{ERIN['email_raw']}")
        dsr_transition(
            request=request,
            status="verified",
            note=f"{ERIN['first_name']} confirmed by phone ({ERIN['phone_raw']})",
        )
        erasure_start(request=request)
        assert erasure_run(request_id=request.id) is True

    # then: no table and no column holds any of her identifiers or traits
    assert _scan(needles) == {}
    # the other person is untouched
    olaf = profile_get_by_external_id(external_id=f"user_id:{OTHER['user_id']}")
    assert olaf is not None and olaf.traits["lastName"] == OTHER["last_name"]
    assert Event.objects.filter(user_id=OTHER["user_id"]).count() == 1
    # the proof of erasure holds counts and hashes, no personal data
    request.refresh_from_db()
    assert request.status == "completed" and request.progress == 100
    assert request.subject.startswith("erased:") and len(request.subject_hash) == 64
    counts = request.erasure_summary["counts"]
    assert counts == {
        "events": 6,
        "rejected_events": 3,
        "profiles": 3,  # her profile, the app's anonymous profile, the twin
        "merges": 2,
        "identifiers": 5,
        "conflicts": 1,
        "dedup_candidates": 1,
        "dedup_block_keys": 0,
        "consent_records": 2,  # marketing granted, analytics refused in the banner
        "admin_log_entries": 3,
        "suppression_entries": 5,
        "ids_scrubbed": 0,  # no one else carries her ids
        "profile_features": 1,  # segments' row of her (merged) profile
        "segment_memberships": 0,  # no segment is defined here
        "personalization_exposures": 0,  # no decision was asked for her
        "personalization_holdout_keys": 1,  # the key her merge kept for the survivor
        "export_webhook_deliveries": 0,  # no destination is configured
    }
    # the anonymized event is kept: it holds nothing of her
    kept = Event.objects.get(message_id="e7")
    assert (kept.user_id, kept.anonymous_id, kept.profile_id) == ("", "", None)
    assert kept.properties == {
        "shipping": {"method": "express"},
        "url": "https://shop.example.com/checkout",
    }
    # destinations were asked to delete her too, and each outcome is recorded
    assert dict(
        ErasureHookOutcome.objects.filter(request=request).values_list("hook", "outcome")
    ) == {
        "test-destination": "ok",
        "test-broken": "failed",
        # exports' own hook: no webhook destination is configured here
        "exports.webhooks": "not_applicable",
    }
    assert ("email", ERIN["email_raw"]) in calls[0] or ("email", ERIN["email"]) in calls[0]
    # and suppression keeps her out: her next events are dropped
    assert SuppressionEntry.objects.count() >= 5
    response = post_events(
        "/v1/batch",
        {
            "batch": [
                {"type": "track", "userId": ERIN["user_id"], "event": "Back", "messageId": "x1"},
                {"type": "page", "anonymousId": ERIN["anon_app"], "messageId": "x2"},
                {
                    "type": "identify",
                    "anonymousId": "brand-new-device",
                    "traits": {"email": ERIN["email_raw"].upper()},
                    "messageId": "x3",
                },
                {"type": "track", "userId": "someone-else", "event": "Hi", "messageId": "x4"},
            ]
        },
    )
    assert response.status_code == 200
    assert list(
        Event.objects.filter(message_id__startswith="x").values_list("message_id", flat=True)
    ) == ["x4"]
    assert _scan(needles) == {}


def test_erasure_resumes_after_a_crash(erin: Profile) -> None:
    request = dsr_create(type="erasure", subject=f"user_id:{ERIN['user_id']}")
    dsr_transition(request=request, status="verified")
    erasure_start(request=request)
    # when: the worker dies after three steps (events deleted in batches of 2)
    assert erasure_run(request_id=request.id, max_steps=3, batch_size=2) is False
    request.refresh_from_db()
    assert request.status == "in_progress" and 0 < request.progress < 100
    assert request.work_state["step"] == "events"
    assert Event.objects.filter(profile_id=erin.id).count() < 5
    # then: running it again (the task's retry, or the stalled-erasure sweep) finishes
    from apps.consent.tasks import erasure_run as erasure_run_task

    assert erasure_run_task.delay(str(request.id)).get() is True
    request.refresh_from_db()
    assert request.status == "completed"
    assert not Profile.objects.filter(id=erin.id).exists()
    assert _scan([ERIN["email"], ERIN["last_name"], ERIN["anon_web"]]) == {}


def test_erasure_needs_a_verified_request(erin: Profile) -> None:
    from apps.consent.services.dsr import RequestRefused

    request = dsr_create(type="erasure", subject=f"user_id:{ERIN['user_id']}")
    with pytest.raises(RequestRefused, match="Verify"):
        erasure_start(request=request)
    assert DataSubjectRequest.objects.get(pk=request.pk).status == "received"
    assert Profile.objects.filter(id=erin.id).exists()


def _erase(subject: str) -> DataSubjectRequest:
    request = dsr_create(type="erasure", subject=subject)
    dsr_transition(request=request, status="verified")
    erasure_start(request=request)
    assert erasure_run(request_id=request.id) is True
    return request


@pytest.fixture
def erased_dee(post_events: Any) -> None:
    identify = {"userId": "dee", "traits": {"email": "Dee@Example.com"}, "messageId": "d1"}
    assert post_events("/v1/identify", identify).status_code == 200
    _erase("email:dee@example.com")
    assert profile_get_by_external_id(external_id="email:dee@example.com") is None


def test_events_naming_an_erased_person_in_external_ids_are_dropped(
    erased_dee: None, post_events: Any
) -> None:
    from apps.consent.selectors import external_id_suppressed, suppression_hits

    # given: Dee was erased
    assert external_id_suppressed("email:DEE@example.com ") is True
    assert suppression_hits(keys=[("email", "dee@example.com"), ("email", "x@example.com")]) == {
        ("email", "dee@example.com")
    }
    # when: a new device sends an event naming her in context.externalIds
    external = [{"type": "email", "id": "DEE@example.com", "collection": "users"}]
    response = post_events(
        "/v1/batch",
        {
            "batch": [
                {
                    "type": "track",
                    "anonymousId": "fresh-device",
                    "event": "Back",
                    "messageId": "d2",
                    "context": {"externalIds": external},
                },
                {"type": "track", "anonymousId": "other", "event": "Hi", "messageId": "d3"},
            ]
        },
    )
    # then: it is dropped and she is not rebuilt
    assert response.status_code == 200
    assert list(Event.objects.values_list("message_id", flat=True)) == ["d3"]
    assert profile_get_by_external_id(external_id="email:dee@example.com") is None


def test_an_event_stored_past_the_gate_does_not_rebuild_an_erased_person(
    erased_dee: None, source: Any
) -> None:
    from django.utils import timezone

    from apps.events.services import events_insert, events_process

    # given: events that reached the table without the gate (a web process whose
    # cached config had not seen the first erasure yet): one of Dee's, one not
    now = timezone.now()

    def row(message_id: str, user_id: str, traits: dict[str, Any]) -> dict[str, Any]:
        return {
            "source_id": source.id,
            "message_id": message_id,
            "type": "identify",
            "event": "",
            "name": "",
            "user_id": user_id,
            "anonymous_id": "",
            "previous_id": "",
            "group_id": "",
            "timestamp": now,
            "original_timestamp": now,
            "sent_at": None,
            "received_at": now,
            "properties": {},
            "traits": traits,
            "context": {},
            "extra": {},
        }

    ids = events_insert(
        rows=[row("late", "dee-2", {"email": "DEE@example.com"}), row("other", "eve", {})]
    )
    # when they are processed
    assert events_process(event_ids=ids) == 2
    # then hers is deleted and she is not rebuilt; the other is resolved
    assert list(Event.objects.values_list("message_id", flat=True)) == ["other"]
    assert profile_get_by_external_id(external_id="email:dee@example.com") is None
    assert profile_get_by_external_id(external_id="user_id:dee-2") is None
    assert profile_get_by_external_id(external_id="user_id:eve") is not None


def test_the_consent_api_does_not_recreate_an_erased_person(
    erased_dee: None, admin_api: Any, make_purpose: Any
) -> None:
    make_purpose("ads")
    # when: a consent statement is posted for her address
    response = admin_api.post(
        "/api/v1/profiles/email:Dee@example.com/consents",
        {"purpose": "ads", "status": "granted"},
        content_type="application/json",
    )
    # then: it is refused, clearly, and nothing is created
    assert response.status_code == 409
    assert response.json()["detail"].startswith("This person was erased")
    assert profile_get_by_external_id(external_id="email:dee@example.com") is None
    assert Profile.objects.count() == 0
    # someone else still starts a profile this way
    other = admin_api.post(
        "/api/v1/profiles/email:new@example.com/consents",
        {"purpose": "ads", "status": "granted"},
        content_type="application/json",
    )
    assert other.status_code == 201


def test_refused_payloads_are_erased_in_any_letter_case_and_json_form(post_events: Any) -> None:
    from apps.events.models import RejectedEvent

    # given: Zoë, and payloads refused with her ids in other cases or JSON-escaped
    identify = {"userId": "zoë-9", "traits": {"email": "zoe@example.com"}, "messageId": "z1"}
    assert post_events("/v1/identify", identify).status_code == 200
    post_events(
        "/v1/batch",
        {
            "batch": [
                {"type": "track", "userId": "someone", "properties": {"mail": "ZOE@EXAMPLE.COM"}},
                {"type": "track", "userId": "ZOË-9", "properties": {}},
                {"type": "track", "userId": "other", "properties": {"mail": "x@example.com"}},
            ]
        },
    )
    # a body that is not JSON is kept as sent: here with \\u escapes
    post_events("/v1/track", b'{"userId": "zo\\u00eb-9", "event": "Oops",')
    assert RejectedEvent.objects.count() == 4
    # when
    _erase("user_id:zoë-9")
    # then: only the other person's payload is left
    assert list(RejectedEvent.objects.values_list("payload", flat=True)) == [
        '{"type":"track","userId":"other","properties":{"mail":"x@example.com"}}'
    ]


def test_other_peoples_requests_keep_their_subject_and_texts(post_events: Any) -> None:
    from apps.consent.models import RequestEvent

    # given: Ida (user id 42), and requests of other people whose ids contain hers
    identify = {"userId": "42", "traits": {"email": "ida@example.com"}, "messageId": "i1"}
    assert post_events("/v1/identify", identify).status_code == 200
    other = dsr_create(type="access", subject="user_id:4242", details="ticket 1425")
    dsr_transition(request=other, status="verified", note="see case 42-B and 1425")
    theirs = dsr_create(type="access", subject="email:IDA@example.com")
    # when
    _erase("user_id:42")
    # then: her earlier request loses her; the other keeps its subject and text,
    # only her id as a word leaves its note
    theirs.refresh_from_db()
    assert theirs.subject.startswith("erased:")
    other.refresh_from_db()
    assert (other.subject, other.details) == ("user_id:4242", "ticket 1425")
    assert list(RequestEvent.objects.filter(request=other).values_list("note", flat=True)) == [
        "",
        "see case [erased]-B and 1425",
    ]

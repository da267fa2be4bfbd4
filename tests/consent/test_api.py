"""The consent and data-subject request API."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.consent.deadlines import MAX_EXTENSION_MONTHS, due_date
from apps.consent.models import ConsentRecord, DataSubjectRequest
from apps.consent.services.dsr import dsr_create, dsr_extend, dsr_transition

pytestmark = pytest.mark.django_db


def test_grant_and_withdraw_through_the_api(admin_api: Any, make_purpose: Any) -> None:
    make_purpose("newsletter", notice_version="2026-01", notice_text="Monthly news.")
    url = "/api/v1/profiles/email:Ada@Example.com/consents"
    # when: consent comes before any event (a signup form)
    response = admin_api.post(
        url,
        {
            "purpose": "newsletter",
            "status": "granted",
            "method": "signup checkbox",
            "proof": {"ip": "198.51.100.7", "user_agent": "UA", "page_url": "https://x/signup"},
            "tcf_string": "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA",
            "gcm_flags": {"ad_storage": "granted", "analytics_storage": "denied"},
        },
        content_type="application/json",
    )
    # then: the person exists, the statement and its proof are in the log
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "granted" and body["source"] == "api"
    assert body["notice_version"] == "2026-01" and len(body["notice_hash"]) == 64
    assert body["gcm_flags"] == {"ad_storage": "granted", "analytics_storage": "denied"}
    assert "198.51.100.7" not in json.dumps(body)
    granted_at = ConsentRecord.objects.get().given_at + timedelta(microseconds=1)
    check = admin_api.get(url + "/check?purpose=newsletter").json()
    assert check["allowed"] is True
    # when: withdrawing is the same call
    assert (
        admin_api.post(
            url, {"purpose": "newsletter", "status": "withdrawn"}, content_type="application/json"
        ).status_code
        == 201
    )
    state = admin_api.get(url).json()
    assert [(s["purpose"], s["status"], s["allowed"]) for s in state["states"]] == [
        ("newsletter", "withdrawn", False)
    ]
    assert [r["status"] for r in state["log"]] == ["withdrawn", "granted"]
    # and the past is still answerable: granted in between, not before
    from urllib.parse import quote

    def allowed_at(at: Any) -> bool:
        return admin_api.get(url + f"/check?purpose=newsletter&at={quote(at.isoformat())}").json()[
            "allowed"
        ]

    assert allowed_at(granted_at) is True
    assert allowed_at(granted_at - timedelta(minutes=5)) is False


def test_consent_api_errors(admin_api: Any, api_client: Any, make_purpose: Any) -> None:
    make_purpose("newsletter")
    url = "/api/v1/profiles/email:ada@example.com/consents"
    bad_purpose = admin_api.post(
        url, {"purpose": "nope", "status": "granted"}, content_type="application/json"
    )
    assert bad_purpose.status_code == 400 and "nope" in bad_purpose.json()["errors"]["purpose"][0]
    bad_status = admin_api.post(
        url, {"purpose": "newsletter", "status": "maybe"}, content_type="application/json"
    )
    assert bad_status.status_code == 400
    bad_id = admin_api.post(
        "/api/v1/profiles/shoe:1/consents",
        {"purpose": "newsletter", "status": "granted"},
        content_type="application/json",
    )
    assert bad_id.status_code == 400
    # a read-only token reads but cannot write
    assert (
        api_client.post(
            url, {"purpose": "newsletter", "status": "granted"}, content_type="application/json"
        ).status_code
        == 403
    )
    assert api_client.get("/api/v1/consent/purposes").status_code == 200
    assert ConsentRecord.objects.count() == 0
    # no token at all
    from django.test import Client

    assert Client().get("/api/v1/consent/purposes").status_code in (401, 403)


@pytest.mark.parametrize("at", ["2025-02-30T10:00:00Z", "2025-13-01T10:00:00Z", "2025-01-01"])
def test_checking_at_an_impossible_time_is_a_400(
    admin_api: Any, make_purpose: Any, make_profile: Any, at: str
) -> None:
    make_purpose("ads")
    make_profile(("user_id", "u1"))
    response = admin_api.get(f"/api/v1/profiles/user_id:u1/consents/check?purpose=ads&at={at}")
    assert response.status_code == 400
    assert response.json()["errors"] == {"at": "An ISO-8601 date and time with a time zone."}


def test_nul_characters_in_json_are_a_400(
    admin_api: Any, make_purpose: Any, make_profile: Any
) -> None:
    from apps.consent.services.dsr import dsr_create, dsr_transition
    from apps.identity.models import Profile

    make_purpose("ads")
    person = make_profile(("user_id", "u1"))
    for flags in ({"a": "\x00"}, {"a\x00": "granted"}, {"a": ["x", {"b": "\x00"}]}):
        response = admin_api.post(
            "/api/v1/profiles/user_id:u1/consents",
            {"purpose": "ads", "status": "granted", "gcm_flags": flags},
            content_type="application/json",
        )
        assert response.status_code == 400
        assert response.json()["errors"] == {
            "gcm_flags": ["NUL characters (\\u0000) are not allowed."]
        }
    assert ConsentRecord.objects.count() == 0
    request = dsr_create(type="rectification", subject="user_id:u1")
    dsr_transition(request=request, status="verified")
    response = admin_api.post(
        f"/api/v1/privacy-requests/{request.id}/rectify",
        {"traits": {"lastName": "Love\x00lace"}},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert Profile.objects.get(pk=person.pk).traits == {}


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        ("id:not-uuid", "id: takes a profile UUID."),
        ("email:not-an-email", "this is not a usable email value."),
        ("phone:123", "this is not a usable phone value."),
        ("user_id:undefined", "this is not a usable user_id value."),
    ],
)
def test_request_subjects_are_validated_fully(admin_api: Any, subject: str, message: str) -> None:
    response = admin_api.post(
        "/api/v1/privacy-requests",
        {"type": "erasure", "subject": subject},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid input.", "errors": {"subject": [message]}}
    assert DataSubjectRequest.objects.count() == 0


def test_a_custom_identifier_type_is_a_valid_subject(admin_api: Any) -> None:
    from apps.identity.models import IdentifierTypeConfig

    IdentifierTypeConfig.objects.create(key="crm_id", label="CRM id", trait="crmId")
    response = admin_api.post(
        "/api/v1/privacy-requests",
        {"type": "access", "subject": "crm_id:C-42"},
        content_type="application/json",
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("received_at", "message"),
    [
        ("2010-01-01T00:00:00Z", "received_at is before the GDPR applied (25 May 2018)."),
        ("2999-01-01T00:00:00Z", "received_at is in the future."),
    ],
)
def test_absurd_receipt_times_are_refused(admin_api: Any, received_at: str, message: str) -> None:
    response = admin_api.post(
        "/api/v1/privacy-requests",
        {"type": "access", "subject": "user_id:42", "received_at": received_at},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid input.", "errors": {"received_at": [message]}}


def test_year_one_is_refused(admin_api: Any) -> None:
    response = admin_api.post(
        "/api/v1/privacy-requests",
        {"type": "access", "subject": "user_id:42", "received_at": "0001-01-01T00:00:00Z"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert DataSubjectRequest.objects.count() == 0


def test_request_workflow_and_deadlines(admin_api: Any) -> None:
    received = timezone.now() - timedelta(days=3)
    created = admin_api.post(
        "/api/v1/privacy-requests",
        {"type": "access", "subject": "email:ada@example.com", "received_at": received.isoformat()},
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    dsr = created.json()
    assert dsr["due_date"] == due_date(timezone.localdate(received)).isoformat()
    url = f"/api/v1/privacy-requests/{dsr['id']}"
    # not allowed: received -> completed
    refused = admin_api.post(
        url + "/transition", {"status": "completed"}, content_type="application/json"
    )
    # a well-formed move the request's state does not allow: a conflict, not a 400
    assert refused.status_code == 409 and "allowed: verified, rejected" in refused.json()["detail"]
    # extensions: reason required, two months at most in all
    assert (
        admin_api.post(
            url + "/extend", {"months": 1, "reason": ""}, content_type="application/json"
        ).status_code
        == 400
    )
    extended = admin_api.post(
        url + "/extend", {"months": 2, "reason": "Complex request"}, content_type="application/json"
    )
    assert extended.status_code == 200
    assert extended.json()["due_date"] == due_date(timezone.localdate(received), 2).isoformat()
    again = admin_api.post(
        url + "/extend", {"months": 1, "reason": "more"}, content_type="application/json"
    )
    assert again.status_code == 409 and "2 months at most" in again.json()["detail"]
    for status in ("verified", "in_progress", "completed"):
        r = admin_api.post(
            url + "/transition", {"status": status, "note": "ok"}, content_type="application/json"
        )
        assert r.status_code == 200, r.content
    final = admin_api.get(url).json()
    assert final["status"] == "completed" and final["completed_at"]
    assert [e["action"] for e in final["events"]] == [
        "created",
        "extended",
        "status",
        "status",
        "status",
    ]
    # rejecting needs a reason
    other = admin_api.post(
        "/api/v1/privacy-requests",
        {"type": "objection", "subject": "user_id:42"},
        content_type="application/json",
    ).json()
    r = admin_api.post(
        f"/api/v1/privacy-requests/{other['id']}/transition",
        {"status": "rejected"},
        content_type="application/json",
    )
    assert r.status_code == 400 and "why" in r.json()["errors"]["note"][0]
    bad = admin_api.post(
        "/api/v1/privacy-requests",
        {"type": "erasure", "subject": "ada"},
        content_type="application/json",
    )
    assert bad.status_code == 400


def test_requests_are_listed_open_and_most_urgent_first(admin_api: Any) -> None:
    from apps.consent.services.dsr import dsr_create, dsr_transition

    now = timezone.now()
    closed = dsr_create(type="access", subject="user_id:1", received_at=now - timedelta(days=60))
    dsr_transition(request=closed, status="rejected", note="not verifiable")
    late = dsr_create(type="erasure", subject="user_id:2", received_at=now - timedelta(days=40))
    soon = dsr_create(type="access", subject="user_id:3", received_at=now - timedelta(days=25))
    fresh = dsr_create(type="access", subject="user_id:4", received_at=now)
    listed = admin_api.get("/api/v1/privacy-requests")
    assert listed.status_code == 200, listed.content
    ids = [r["id"] for r in listed.json()]
    assert ids == [str(late.id), str(soon.id), str(fresh.id), str(closed.id)]


def test_export_archive_holds_everything_about_the_person(
    admin_api: Any, post_events: Any, make_purpose: Any
) -> None:
    # given: a person with events (two devices merged), traits and consent
    make_purpose("newsletter")
    post_events(
        "/v1/batch",
        {
            "batch": [
                {"type": "page", "anonymousId": "a-1", "name": "Home", "messageId": "m1"},
                {
                    "type": "identify",
                    "anonymousId": "a-1",
                    "userId": "u-ada",
                    "traits": {"email": "ada@example.com", "firstName": "Ada"},
                    "messageId": "m2",
                },
                {"type": "track", "anonymousId": "a-2", "event": "Cart Viewed", "messageId": "m3"},
                {"type": "alias", "previousId": "a-2", "userId": "u-ada", "messageId": "m4"},
                {"type": "track", "userId": "someone-else", "event": "X", "messageId": "m5"},
            ]
        },
    )
    admin_api.post(
        "/api/v1/profiles/user_id:u-ada/consents",
        {"purpose": "newsletter", "status": "granted"},
        content_type="application/json",
    )
    dsr = admin_api.post(
        "/api/v1/privacy-requests",
        {"type": "portability", "subject": "email:ada@example.com"},
        content_type="application/json",
    ).json()
    url = f"/api/v1/privacy-requests/{dsr['id']}"
    # not before the requester is verified (a conflict with the request's state)
    assert admin_api.get(url + "/export").status_code == 409
    admin_api.post(url + "/transition", {"status": "verified"}, content_type="application/json")
    # when
    response = admin_api.get(url + "/export")
    # then
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert set(archive.namelist()) >= {
        "README.txt",
        "data.json",
        "profile.csv",
        "identifiers.csv",
        "events.csv",
        "consent.csv",
        "merges.csv",
    }
    tables = json.loads(archive.read("data.json"))["tables"]
    assert sorted(e["message_id"] for e in tables["events"]) == ["m1", "m2", "m3", "m4"]
    assert {(i["type"], i["value"]) for i in tables["identifiers"]} == {
        ("anonymous_id", "a-1"),
        ("anonymous_id", "a-2"),
        ("user_id", "u-ada"),
        ("email", "ada@example.com"),
    }
    live = [p for p in tables["profile"] if p["merged_into"] is None]
    assert len(live) == 1 and live[0]["traits"]["firstName"] == "Ada"
    assert [c["purpose"] for c in tables["consent"]] == ["newsletter"]
    assert len(tables["merges"]) == 1
    events_csv = list(csv.DictReader(io.StringIO(archive.read("events.csv").decode())))
    assert sorted(r["message_id"] for r in events_csv) == ["m1", "m2", "m3", "m4"]
    assert "someone-else" not in archive.read("data.json").decode()
    # the download is on the request's trail, with the archive's hash
    trail = admin_api.get(url).json()["events"]
    assert trail[-1]["action"] == "exported" and "sha256" in trail[-1]["note"]
    assert DataSubjectRequest.objects.get(pk=dsr["id"]).status == "verified"


def test_profile_resource_shows_consents(
    admin_api: Any, make_purpose: Any, make_profile: Any
) -> None:
    from apps.consent.services import consent_grant

    make_purpose("ads")
    make_purpose("fraud", legal_basis="legitimate_interest", default_granted=True)
    person = make_profile(("user_id", "u-1"))
    consent_grant(profile_id=person.id, purpose="ads", source="api")
    body = admin_api.get("/api/v1/profiles/user_id:u-1").json()
    assert body["consents"] == {
        "ads": {"status": "granted", "allowed": True},
        "fraud": {"status": "default", "allowed": True},
    }


def test_rectification_corrects_traits_and_the_trail_keeps_no_values(
    admin_api: Any, make_profile: Any
) -> None:
    from apps.identity.models import Profile
    from apps.identity.services import profiles_resolve
    from apps.identity.services.resolve import IdentityClaim

    person = make_profile(("email", "ada@example.com"))
    Profile.objects.filter(pk=person.pk).update(
        traits={"lastName": "Lovelase", "phone": "+15550100"},
        trait_timestamps={"lastName": "2026-01-01T00:00:00.000000+00:00"},
    )
    dsr = admin_api.post(
        "/api/v1/privacy-requests",
        {"type": "rectification", "subject": "email:ada@example.com", "details": "typo"},
        content_type="application/json",
    ).json()
    url = f"/api/v1/privacy-requests/{dsr['id']}"
    body = {"traits": {"lastName": "Lovelace", "phone": None}}
    # not before verification (a conflict with the request's state)
    assert (
        admin_api.post(url + "/rectify", body, content_type="application/json").status_code == 409
    )
    admin_api.post(url + "/transition", {"status": "verified"}, content_type="application/json")
    response = admin_api.post(url + "/rectify", body, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "in_progress"
    person.refresh_from_db()
    assert person.traits == {"lastName": "Lovelace"}
    note = response.json()["events"][-1]["note"]
    assert note == "traits corrected: lastName, phone" and "Lovelace" not in note
    # a late event with the old value does not undo the correction
    profiles_resolve(
        claims=[
            IdentityClaim(
                identifiers=[("email", "ada@example.com")],
                timestamp=timezone.now() - timedelta(days=30),
                traits={"lastName": "Lovelase"},
            )
        ]
    )
    person.refresh_from_db()
    assert person.traits["lastName"] == "Lovelace"


def test_rectifying_an_identifying_trait_moves_its_identifier(
    admin_api: Any, make_profile: Any
) -> None:
    from apps.identity.models import Identifier, Profile
    from apps.identity.selectors import profile_get_by_external_id

    # given Ada, known by user id and a mistyped address, and Bob with his own
    ada = make_profile(("user_id", "ada"), ("email", "ada@exampel.com"))
    Profile.objects.filter(pk=ada.pk).update(traits={"email": "ada@exampel.com"})
    make_profile(("user_id", "bob"), ("email", "bob@example.com"))
    dsr = admin_api.post(
        "/api/v1/privacy-requests",
        {"type": "rectification", "subject": "user_id:ada"},
        content_type="application/json",
    ).json()
    url = f"/api/v1/privacy-requests/{dsr['id']}"
    admin_api.post(url + "/transition", {"status": "verified"}, content_type="application/json")

    def rectify(traits: dict[str, Any]) -> Any:
        return admin_api.post(url + "/rectify", {"traits": traits}, content_type="application/json")

    # when the address is corrected to one Bob holds, or to no address at all
    taken = rectify({"email": "Bob@Example.com"})
    invalid = rectify({"email": "not an address"})
    # then both are refused, and nothing changed
    assert taken.status_code == 400
    assert "merge the two profiles" in taken.json()["detail"]
    assert invalid.status_code == 400
    assert invalid.json()["detail"] == "'not an address' is not a usable email."
    assert set(Identifier.objects.filter(profile=ada).values_list("type", "value")) == {
        ("user_id", "ada"),
        ("email", "ada@exampel.com"),
    }
    # when it is corrected to her real address
    assert rectify({"email": "Ada@Example.com"}).status_code == 200
    # then the wrong address no longer names her and the right one does
    ada.refresh_from_db()
    assert ada.traits["email"] == "Ada@Example.com"
    assert set(Identifier.objects.filter(profile=ada).values_list("type", "value")) == {
        ("user_id", "ada"),
        ("email", "ada@example.com"),
    }
    assert profile_get_by_external_id(external_id="email:ada@exampel.com") is None
    found = profile_get_by_external_id(external_id="email:ada@example.com")
    assert found is not None and found.pk == ada.pk
    # and removing the trait removes the identifier
    assert rectify({"email": None}).status_code == 200
    assert not Identifier.objects.filter(profile=ada, type="email").exists()


def test_objection_denies_the_purposes(
    admin_api: Any, make_purpose: Any, make_profile: Any
) -> None:
    from apps.consent.selectors import has_consent

    make_purpose("profiling", legal_basis="legitimate_interest", default_granted=True)
    make_purpose("service", legal_basis="contract", required=True)
    person = make_profile(("user_id", "u-9"))
    assert has_consent(person, "profiling") is True
    dsr = admin_api.post(
        "/api/v1/privacy-requests",
        {"type": "objection", "subject": "user_id:u-9"},
        content_type="application/json",
    ).json()
    url = f"/api/v1/privacy-requests/{dsr['id']}"
    admin_api.post(url + "/transition", {"status": "verified"}, content_type="application/json")
    # a required purpose cannot be objected to this way, and nothing is recorded
    refused = admin_api.post(
        url + "/object", {"purposes": ["service"]}, content_type="application/json"
    )
    assert refused.status_code == 409 and "required" in refused.json()["detail"]
    assert not ConsentRecord.objects.exists()
    unknown = admin_api.post(
        url + "/object", {"purposes": ["nope"]}, content_type="application/json"
    )
    assert unknown.status_code == 400
    ok = admin_api.post(
        url + "/object", {"purposes": ["profiling"]}, content_type="application/json"
    )
    assert ok.status_code == 200, ok.content
    assert has_consent(person, "profiling") is False
    record = ConsentRecord.objects.get()
    assert (record.status, record.source) == ("denied", "admin")
    assert record.method.startswith("Objection")


@pytest.mark.parametrize("reason", ["", " ", "\n\t"])
def test_extend_with_an_empty_reason_is_400_and_the_schema_says_so(
    admin_api: Any, openapi: Any, reason: str
) -> None:
    # given
    from apps.consent.services.dsr import dsr_create

    dsr = dsr_create(type="access", subject="user_id:42")

    # when
    response = admin_api.post(
        f"/api/v1/privacy-requests/{dsr.id}/extend",
        {"months": 1, "reason": reason},
        content_type="application/json",
    )

    # then: refused, and the schema no longer allows it
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["reason"]
    dsr.refresh_from_db()
    assert dsr.extension_months == 0
    schema = openapi.component("DsrExtendInput")
    assert schema["properties"]["reason"]["minLength"] == 1
    assert openapi.errors(schema, {"months": 1, "reason": reason})
    assert openapi.errors(schema, {"months": 1, "reason": " Complex "}) == []
    error = openapi.response_schema("/api/v1/privacy-requests/{id}/extend", "post", 400)
    assert openapi.errors(error, response.json()) == []


def test_state_refusals_are_documented_409s(admin_api: Any, openapi: Any) -> None:
    # given: a request that is closed
    from apps.consent.services.dsr import dsr_create, dsr_transition

    dsr = dsr_create(type="access", subject="user_id:42")
    dsr_transition(request=dsr, status="rejected", note="Not a customer.")
    url = f"/api/v1/privacy-requests/{dsr.id}"

    # when
    answers = {
        "/transition": admin_api.post(
            url + "/transition", {"status": "verified"}, content_type="application/json"
        ),
        "/extend": admin_api.post(
            url + "/extend", {"months": 1, "reason": "Complex"}, content_type="application/json"
        ),
        "/erase": admin_api.post(url + "/erase", content_type="application/json"),
        "/export": admin_api.get(url + "/export"),
    }

    # then: each a 409 with a detail, as its operation documents
    for suffix, response in answers.items():
        method = "get" if suffix == "/export" else "post"
        path = "/api/v1/privacy-requests/{id}" + suffix
        assert response.status_code == 409, (suffix, response.content)
        error = openapi.response_schema(path, method, 409)
        assert openapi.errors(error, response.json()) == [], suffix


def _extend_in_admin(client: Any, dsr: DataSubjectRequest, months: int) -> list[str]:
    from django.contrib.messages import get_messages

    response = client.post(
        f"/admin/consent/datasubjectrequest/{dsr.pk}/workflow/",
        {"action": "extend", "months": str(months), "note": "Complex request"},
    )
    assert response.status_code == 302
    return [m.message for m in get_messages(response.wsgi_request) if m.level_tag == "error"]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("beyond_the_limit", f"extended by {MAX_EXTENSION_MONTHS} months at most in all"),
        ("closed", "Only an open request can be extended."),
        ("after_the_first_month", "The first month after receipt has passed"),
    ],
)
def test_admin_and_api_refuse_the_same_extension_with_the_same_message(
    admin_api: Any, client: Any, case: str, expected: str
) -> None:
    from django.contrib.auth import get_user_model

    # given: a request that may not be extended (further)
    days_ago = 40 if case == "after_the_first_month" else 3
    dsr = dsr_create(
        type="access",
        subject="email:ada@example.com",
        received_at=timezone.now() - timedelta(days=days_ago),
    )
    if case == "beyond_the_limit":
        dsr = dsr_extend(request=dsr, months=MAX_EXTENSION_MONTHS, reason="Complex")
    if case == "closed":
        dsr = dsr_transition(request=dsr, status="rejected", note="not verified")
    before = (dsr.due_date, dsr.extension_months)
    client.force_login(get_user_model().objects.create_superuser("privacy", "p@example.com"))

    # when: the same extension in the admin and through the API
    in_admin = _extend_in_admin(client, dsr, 1)
    by_api = admin_api.post(
        f"/api/v1/privacy-requests/{dsr.pk}/extend",
        {"months": 1, "reason": "Complex request"},
        content_type="application/json",
    )

    # then: both refuse it, with the service's message, and nothing changed
    assert by_api.status_code == 409
    assert in_admin == [by_api.json()["detail"]]
    assert expected in in_admin[0]
    dsr.refresh_from_db()
    assert (dsr.due_date, dsr.extension_months) == before


def test_admin_offers_only_the_extensions_the_service_allows(client: Any) -> None:
    from django.contrib.auth import get_user_model

    # given: a request extended by one month of MAX_EXTENSION_MONTHS
    dsr = dsr_create(type="access", subject="email:ada@example.com")
    dsr = dsr_extend(request=dsr, months=1, reason="Complex")
    client.force_login(get_user_model().objects.create_superuser("privacy", "p@example.com"))

    # when
    page = client.get(f"/admin/consent/datasubjectrequest/{dsr.pk}/change/")

    # then: the remaining months only; a longer one is refused as the API refuses it
    assert page.context["extension_months"] == tuple(range(1, MAX_EXTENSION_MONTHS))
    assert _extend_in_admin(client, dsr, MAX_EXTENSION_MONTHS) == [
        f"The deadline can be extended by {MAX_EXTENSION_MONTHS} months at most in all "
        "(already extended by 1)."
    ]

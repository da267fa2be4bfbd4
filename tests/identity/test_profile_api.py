"""The profile API, fed through the ingestion API as clients would feed it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from apps.api_auth.models import ApiToken
from apps.api_auth.services import api_token_create, api_token_revoke, service_user_ensure
from apps.events.models import Event
from apps.identity.models import Profile

pytestmark = pytest.mark.django_db

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
PROFILE_PATHS = [
    "/api/v1/profiles",
    "/api/v1/profiles/user_id:u-1",
    "/api/v1/profiles/user_id:u-1/events",
]


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _event(kind: str, at: datetime, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "timestamp": _iso(at), **fields}


@pytest.fixture
def ingest(post_events: Callable[..., Any]) -> Callable[..., None]:
    """Send events as one batch; they are stored and processed before it returns."""

    def send(*events: dict[str, Any]) -> None:
        response = post_events("/v1/batch", {"batch": list(events)})
        assert response.status_code == 200
        assert orjson.loads(response.content) == {"success": True}

    return send


@pytest.fixture
def ada(ingest: Callable[..., None]) -> Profile:
    """An anonymous visitor who later signed up as u-1."""
    ingest(
        _event("page", T0, anonymousId="anon-1", name="Home", messageId="m-page"),
        _event(
            "identify",
            T0 + timedelta(minutes=5),
            userId="u-1",
            anonymousId="anon-1",
            messageId="m-identify",
            traits={"email": "Ada@Example.COM", "phone": "(415) 555-2671", "name": "Ada"},
        ),
        _event(
            "track",
            T0 + timedelta(minutes=9),
            userId="u-1",
            event="Order Completed",
            properties={"total": 42.5, "currency": "EUR"},
            messageId="m-track",
        ),
    )
    return Profile.objects.get()


def _get(api_client: Client, path: str, **params: Any) -> Any:
    return api_client.get(path, params)


def _identifiers(body: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((i["type"], i["value"]) for i in body["identifiers"])


ADA_IDENTIFIERS = [
    ("anonymous_id", "anon-1"),
    ("email", "ada@example.com"),
    ("phone", "+14155552671"),
    ("user_id", "u-1"),
]


# --- Lookup ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "external_id",
    [
        "user_id:u-1",
        "anonymous_id:anon-1",
        "email:ada@example.com",
        "email:ADA@example.com",
        "email:  Ada@Example.COM ",
        "phone:+14155552671",
        "phone:(415) 555-2671",
        "phone:+1 415-555-2671",
    ],
)
def test_profile_is_found_by_each_identifier_type(api_client, ada, external_id):
    # when
    response = api_client.get(f"/api/v1/profiles/{quote(external_id)}")

    # then
    assert response.status_code == 200
    body = response.json()
    assert _identifiers(body) == ADA_IDENTIFIERS
    assert {k: v for k, v in body.items() if k != "identifiers"} == {
        "id": str(ada.id),
        "traits": {"email": "Ada@Example.COM", "phone": "(415) 555-2671", "name": "Ada"},
        "first_seen": "2024-03-01T09:00:00Z",
        "last_seen": "2024-03-01T09:09:00Z",
        "merged_into": None,
        "merges": [],
        "features": _ADA_FEATURES
        | {"days_since_last_order": _days_since(T0 + timedelta(minutes=9))},
        "segments": [],  # no segment is defined here
        "consents": {},
    }


# Her page view, sign-up and order (by hand: one 9-minute session).
_ADA_FEATURES = {
    "orders_count": 1,
    "revenue_total": 42.5,
    "average_order_value": 42.5,
    "first_order_at": "2024-03-01T09:09:00+00:00",
    "last_order_at": "2024-03-01T09:09:00+00:00",
    "first_seen_at": "2024-03-01T09:00:00+00:00",
    "last_seen_at": "2024-03-01T09:09:00+00:00",
    "active_days": 1,
    "sessions_count": 1,
    "average_session_seconds": 540.0,
    "page_views": 1,
    "product_views": 0,
    "top_categories": [],
    "cart_adds": 0,
    "cart_abandoned": False,
    "email_opens": 0,
    "email_clicks": 0,
    "last_device": None,
    "last_country": None,
    "rfm_recency": None,
    "rfm_frequency": None,
    "rfm_monetary": None,
    "rfm_group": None,
}


def _days_since(at: datetime) -> int:
    return (datetime.now(UTC) - at).days


def test_profile_is_found_by_its_id(api_client, ada):
    # when
    response = api_client.get(f"/api/v1/profiles/id:{ada.id}")

    # then
    assert response.status_code == 200
    assert response.json()["id"] == str(ada.id)
    assert _identifiers(response.json()) == ADA_IDENTIFIERS


def test_trailing_slash_is_accepted(api_client, ada):
    # when
    response = api_client.get("/api/v1/profiles/user_id:u-1/")

    # then
    assert response.status_code == 200
    assert response.json()["id"] == str(ada.id)


@pytest.mark.parametrize(
    "external_id",
    [
        "user_id:nobody",
        "anonymous_id:anon-2",
        "email:nobody@example.com",
        "email:not-an-email",
        "phone:+442079460958",
        "user_id:undefined",
        f"id:{uuid.UUID(int=1)}",
    ],
)
def test_unknown_profile_is_404(api_client, ada, external_id):
    # when
    response = api_client.get(f"/api/v1/profiles/{quote(external_id)}")

    # then
    assert response.status_code == 404
    assert response.json() == {"detail": "No profile with this id."}


@pytest.mark.parametrize("suffix", ["", "/events"])
@pytest.mark.parametrize(
    ("external_id", "message"),
    [
        ("u-1", None),
        ("user_id:", None),
        (":u-1", None),
        ("nickname:ada", None),
        ("id:not-a-uuid", "'not-a-uuid' is not a valid profile UUID."),
    ],
)
def test_malformed_external_id_is_400_with_detail(api_client, ada, external_id, message, suffix):
    # when
    response = api_client.get(f"/api/v1/profiles/{quote(external_id)}{suffix}")

    # then
    assert response.status_code == 400
    expected = message or (
        "Profile ids have the form <type>:<value>, e.g. user_id:42 or email:a@example.com; "
        "type is one of id, user_id, email, phone, anonymous_id."
    )
    assert response.json() == {"detail": "Invalid input.", "errors": {"external_id": expected}}


def test_absorbed_profile_id_leads_to_its_survivor(api_client, ingest, ada):
    # given: a second device, later recognized as Ada's
    ingest(_event("page", T0 + timedelta(hours=1), anonymousId="phone-1", messageId="m-p2"))
    phone = Profile.objects.exclude(id=ada.id).get()
    ingest(
        _event(
            "identify",
            T0 + timedelta(hours=2),
            userId="u-1",
            anonymousId="phone-1",
            messageId="m-i2",
        )
    )

    # when
    response = api_client.get(f"/api/v1/profiles/id:{phone.id}")

    # then
    assert response.status_code == 200
    assert response.json()["id"] == str(ada.id)
    assert ("anonymous_id", "phone-1") in _identifiers(response.json())
    assert response.json()["last_seen"] == "2024-03-01T11:00:00Z"


# --- Events -----------------------------------------------------------------------------


def test_profile_events_are_listed_newest_first_with_all_fields(api_client, ada):
    # when
    response = api_client.get("/api/v1/profiles/user_id:u-1/events")

    # then
    assert response.status_code == 200
    body = response.json()
    assert body["next"] is None
    assert body["previous"] is None
    assert [(e["type"], e["messageId"]) for e in body["results"]] == [
        ("track", "m-track"),
        ("identify", "m-identify"),
        ("page", "m-page"),
    ]
    track = body["results"][0]
    received_at = track.pop("receivedAt")
    assert datetime.fromisoformat(received_at) > T0
    assert track == {
        "id": Event.objects.get(message_id="m-track").id,
        "messageId": "m-track",
        "type": "track",
        "event": "Order Completed",
        "name": "",
        "userId": "u-1",
        "anonymousId": "",
        "timestamp": "2024-03-01T09:09:00Z",
        "originalTimestamp": "2024-03-01T09:09:00Z",
        "sentAt": None,
        "properties": {"total": 42.5, "currency": "EUR"},
        "traits": {},
        "context": {"ip": "127.0.0.1"},
    }
    assert body["results"][2]["name"] == "Home"


def test_alias_and_group_events_carry_their_ids(api_client, ingest, ada):
    # given
    ingest(
        _event("group", T0 + timedelta(hours=1), userId="u-1", groupId="acme", messageId="m-g"),
        _event(
            "alias", T0 + timedelta(hours=2), userId="u-1", previousId="anon-1", messageId="m-a"
        ),
    )

    # when
    response = api_client.get("/api/v1/profiles/user_id:u-1/events")

    # then
    alias, group = response.json()["results"][:2]
    assert (alias["type"], alias["previousId"]) == ("alias", "anon-1")
    assert (group["type"], group["groupId"]) == ("group", "acme")
    assert "groupId" not in alias
    assert "previousId" not in group


def test_profile_events_paginate_with_a_cursor(api_client, ingest):
    # given: events sent out of order, two of them at the same moment
    offsets = [3, 0, 7, 5, 5, 1, 9]
    ingest(
        *(
            _event(
                "track", T0 + timedelta(minutes=m), userId="u-7", event=f"E{i}", messageId=f"m{i}"
            )
            for i, m in enumerate(offsets)
        )
    )
    expected = [
        e.message_id for e in Event.objects.filter(user_id="u-7").order_by("-timestamp", "-id")
    ]

    # when
    pages = []
    response = api_client.get("/api/v1/profiles/user_id:u-7/events", {"limit": 2})
    while True:
        assert response.status_code == 200
        pages.append([e["messageId"] for e in response.json()["results"]])
        if response.json()["next"] is None:
            break
        response = api_client.get(response.json()["next"])

    # then
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    assert [m for page in pages for m in page] == expected
    assert expected[0] == "m6"
    assert expected[-1] == "m1"


def test_events_of_an_unknown_profile_is_404(api_client, ada):
    # when
    response = api_client.get("/api/v1/profiles/user_id:nobody/events")

    # then
    assert response.status_code == 404


# --- List -------------------------------------------------------------------------------


def test_profile_list_paginates_and_includes_identifiers(api_client, ingest):
    # given: five people, one of whom is merged into another
    for i in range(5):
        ingest(
            _event(
                "identify",
                T0 + timedelta(minutes=i),
                userId=f"u-{i}",
                anonymousId=f"anon-{i}",
                messageId=f"m-{i}",
            )
        )
    ingest(_event("page", T0, anonymousId="anon-x", messageId="m-x"))
    ingest(
        _event("alias", T0 + timedelta(hours=1), userId="u-0", previousId="anon-x", messageId="m-a")
    )

    # when
    profiles = []
    response = api_client.get("/api/v1/profiles", {"limit": 2})
    pages = 0
    while True:
        assert response.status_code == 200
        profiles.extend(response.json()["results"])
        pages += 1
        if response.json()["next"] is None:
            break
        response = api_client.get(response.json()["next"])

    # then
    assert pages == 3
    assert len(profiles) == 5
    assert len({p["id"] for p in profiles}) == 5
    by_user = {
        next(i["value"] for i in p["identifiers"] if i["type"] == "user_id"): p for p in profiles
    }
    assert by_user["u-0"]["identifiers"] == [
        {"type": "anonymous_id", "value": "anon-0"},
        {"type": "anonymous_id", "value": "anon-x"},
        {"type": "user_id", "value": "u-0"},
    ]
    assert by_user["u-3"]["identifiers"] == [
        {"type": "anonymous_id", "value": "anon-3"},
        {"type": "user_id", "value": "u-3"},
    ]
    created = [Profile.objects.get(id=p["id"]).created_at for p in profiles]
    assert created == sorted(created, reverse=True)


def test_profile_list_is_empty_without_profiles(api_client):
    # when
    response = api_client.get("/api/v1/profiles")

    # then
    assert response.status_code == 200
    assert response.json() == {"next": None, "previous": None, "results": []}


# --- Auth -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PROFILE_PATHS)
def test_no_token_is_401(client, ada, path):
    # when
    response = client.get(path)

    # then
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json() == {"detail": "Authentication credentials were not provided."}


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        ("Bearer cdp_not-a-real-token", "Invalid, expired or revoked token."),
        ("Bearer", "Invalid Authorization header: expected 'Bearer <token>'."),
        ("Bearer a b", "Invalid Authorization header: expected 'Bearer <token>'."),
        ("Basic dXNlcjpwYXNz", "Authentication credentials were not provided."),
    ],
)
@pytest.mark.parametrize("path", PROFILE_PATHS)
def test_unusable_authorization_is_401(client, ada, path, authorization, detail):
    # when
    response = client.get(path, HTTP_AUTHORIZATION=authorization)

    # then
    assert response.status_code == 401
    assert response.json() == {"detail": detail}


@pytest.mark.parametrize("path", PROFILE_PATHS)
def test_revoked_token_is_401(client, ada, path):
    # given
    user = service_user_ensure(name="revoked", read_only=True)
    token, raw = api_token_create(name="old", user=user)
    api_token_revoke(token=token)

    # when
    response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {raw}")

    # then
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid, expired or revoked token."}


def test_expired_token_is_401(client, ada):
    # given
    user = service_user_ensure(name="expired", read_only=True)
    token, raw = api_token_create(name="old", user=user)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=T0)

    # when
    response = client.get("/api/v1/profiles/user_id:u-1", HTTP_AUTHORIZATION=f"Bearer {raw}")

    # then
    assert response.status_code == 401


def test_token_of_inactive_user_is_401(client, ada):
    # given
    user = service_user_ensure(name="gone", read_only=True)
    _, raw = api_token_create(name="t", user=user)
    user.is_active = False
    user.save()

    # when
    response = client.get("/api/v1/profiles/user_id:u-1", HTTP_AUTHORIZATION=f"Bearer {raw}")

    # then
    assert response.status_code == 401


@pytest.mark.parametrize("path", PROFILE_PATHS)
def test_token_without_view_permission_is_403(client, ada, path):
    # given
    user = get_user_model().objects.create_user(username="intern")
    _, raw = api_token_create(name="intern", user=user)

    # when
    response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {raw}")

    # then
    assert response.status_code == 403
    assert response.json() == {"detail": "You do not have permission to perform this action."}


def test_forbidden_lookup_reveals_nothing_about_the_profile(client, ada):
    # given
    user = get_user_model().objects.create_user(username="intern")
    _, raw = api_token_create(name="intern", user=user)

    # when
    found = client.get("/api/v1/profiles/user_id:u-1", HTTP_AUTHORIZATION=f"Bearer {raw}")
    missing = client.get("/api/v1/profiles/user_id:nobody", HTTP_AUTHORIZATION=f"Bearer {raw}")

    # then
    assert (found.status_code, missing.status_code) == (403, 403)
    assert found.content == missing.content


# --- Identity through ingestion ----------------------------------------------------------


def test_identify_links_the_anonymous_history_to_the_user(api_client, ada):
    # when
    by_anon = api_client.get("/api/v1/profiles/anonymous_id:anon-1").json()
    by_user = api_client.get("/api/v1/profiles/user_id:u-1").json()
    events = api_client.get("/api/v1/profiles/anonymous_id:anon-1/events").json()["results"]

    # then
    assert by_anon == by_user
    assert Profile.objects.count() == 1
    assert [e["messageId"] for e in events] == ["m-track", "m-identify", "m-page"]


def test_identify_after_anonymous_events_on_two_requests_links_them(api_client, ingest):
    # given
    ingest(_event("track", T0, anonymousId="anon-5", event="Viewed", messageId="m-1"))

    # when
    ingest(
        _event(
            "identify",
            T0 + timedelta(minutes=1),
            userId="u-5",
            anonymousId="anon-5",
            messageId="m-2",
        )
    )

    # then
    body = api_client.get("/api/v1/profiles/user_id:u-5").json()
    assert _identifiers(body) == [("anonymous_id", "anon-5"), ("user_id", "u-5")]
    assert (body["first_seen"], body["last_seen"]) == (
        "2024-03-01T09:00:00Z",
        "2024-03-01T09:01:00Z",
    )
    events = api_client.get("/api/v1/profiles/user_id:u-5/events").json()["results"]
    assert [e["messageId"] for e in events] == ["m-2", "m-1"]


def test_alias_links_the_previous_id_to_the_user(api_client, ingest, ada):
    # given: a visitor on another device, not yet known as Ada
    ingest(
        _event(
            "page", T0 + timedelta(hours=1), anonymousId="tablet-1", name="Docs", messageId="m-t"
        )
    )
    assert Profile.objects.live().count() == 2

    # when
    ingest(
        _event(
            "alias", T0 + timedelta(hours=2), userId="u-1", previousId="tablet-1", messageId="m-a"
        )
    )

    # then
    body = api_client.get("/api/v1/profiles/anonymous_id:tablet-1").json()
    assert body["id"] == str(ada.id)
    assert _identifiers(body) == sorted([*ADA_IDENTIFIERS, ("anonymous_id", "tablet-1")])
    assert Profile.objects.live().count() == 1
    events = api_client.get("/api/v1/profiles/user_id:u-1/events").json()["results"]
    assert [e["messageId"] for e in events] == ["m-a", "m-t", "m-track", "m-identify", "m-page"]


def test_alias_of_a_new_previous_id_adds_it_to_the_user(api_client, ingest, ada):
    # when
    ingest(
        _event(
            "alias", T0 + timedelta(hours=2), userId="u-1", previousId="legacy-7", messageId="m-a"
        )
    )

    # then
    body = api_client.get("/api/v1/profiles/anonymous_id:legacy-7").json()
    assert body["id"] == str(ada.id)


def test_identify_traits_are_kept_and_updated(api_client, ingest, ada):
    # when: a later identify changes one trait and adds one
    ingest(
        _event(
            "identify",
            T0 + timedelta(days=1),
            userId="u-1",
            traits={"name": "Ada Lovelace", "plan": "pro"},
            messageId="m-i2",
        )
    )

    # then
    body = api_client.get("/api/v1/profiles/user_id:u-1").json()
    assert body["traits"] == {
        "email": "Ada@Example.COM",
        "phone": "(415) 555-2671",
        "name": "Ada Lovelace",
        "plan": "pro",
    }
    assert body["last_seen"] == "2024-03-02T09:00:00Z"


def test_track_traits_do_not_replace_identify_traits_but_context_traits_do(api_client, ingest, ada):
    # when
    ingest(
        _event(
            "track",
            T0 + timedelta(days=1),
            userId="u-1",
            event="Upgraded",
            properties={"name": "not a trait"},
            context={"traits": {"plan": "team"}},
            messageId="m-t2",
        ),
        _event(
            "group",
            T0 + timedelta(days=1),
            userId="u-1",
            groupId="acme",
            traits={"name": "Acme Inc"},
            messageId="m-g",
        ),
    )

    # then
    traits = api_client.get("/api/v1/profiles/user_id:u-1").json()["traits"]
    assert traits["name"] == "Ada"
    assert traits["plan"] == "team"


def test_older_identify_arriving_late_does_not_overwrite_newer_traits(api_client, ingest):
    # given
    ingest(
        _event(
            "identify",
            T0 + timedelta(hours=2),
            userId="u-8",
            traits={"plan": "pro", "name": "Grace"},
            messageId="m-new",
        )
    )

    # when: an identify from an hour before arrives afterwards
    ingest(
        _event(
            "identify",
            T0 + timedelta(hours=1),
            userId="u-8",
            traits={"plan": "free", "company": "Navy"},
            messageId="m-old",
        )
    )

    # then: the newer value stays; the trait only the older event had is taken
    body = api_client.get("/api/v1/profiles/user_id:u-8").json()
    assert body["traits"] == {"plan": "pro", "name": "Grace", "company": "Navy"}
    assert (body["first_seen"], body["last_seen"]) == (
        "2024-03-01T10:00:00Z",
        "2024-03-01T11:00:00Z",
    )


def test_older_identify_in_the_same_batch_does_not_overwrite_newer_traits(api_client, ingest):
    # when
    ingest(
        _event(
            "identify",
            T0 + timedelta(hours=2),
            userId="u-9",
            traits={"plan": "pro"},
            messageId="m-new",
        ),
        _event(
            "identify",
            T0 + timedelta(hours=1),
            userId="u-9",
            traits={"plan": "free"},
            messageId="m-old",
        ),
    )

    # then
    assert api_client.get("/api/v1/profiles/user_id:u-9").json()["traits"] == {"plan": "pro"}


def test_identify_email_trait_becomes_a_lookup_identifier(api_client, ingest):
    # when
    ingest(
        _event("identify", T0, userId="u-10", traits={"email": " Grace@Navy.MIL "}, messageId="m")
    )

    # then
    response = api_client.get("/api/v1/profiles/email:grace@navy.mil")
    assert response.status_code == 200
    assert ("email", "grace@navy.mil") in _identifiers(response.json())


@pytest.mark.parametrize("same_batch", [False, True], ids=["two-batches", "one-batch"])
def test_alias_between_two_user_ids_does_not_depend_on_batching(api_client, ingest, same_batch):
    # given: a user renamed from old-1 to new-1 (two user ids are never one profile)
    identify = _event("identify", T0, userId="old-1", traits={"plan": "pro"}, messageId="m-i")
    alias = _event(
        "alias", T0 + timedelta(minutes=1), userId="new-1", previousId="old-1", messageId="m-a"
    )

    # when
    if same_batch:
        ingest(identify, alias)
    else:
        ingest(identify)
        ingest(alias)

    # then: the old user id is not mistaken for an anonymous id of the new user
    old = api_client.get("/api/v1/profiles/user_id:old-1").json()
    new = api_client.get("/api/v1/profiles/user_id:new-1").json()
    assert old["id"] != new["id"]
    assert _identifiers(old) == [("user_id", "old-1")]
    assert _identifiers(new) == [("user_id", "new-1")]
    assert api_client.get("/api/v1/profiles/anonymous_id:old-1").status_code == 404


@pytest.mark.parametrize("path_value", ["ada+news@example.com", "ada%2Bnews%40example.com"])
def test_email_with_a_plus_is_found_whether_encoded_or_not(api_client, ingest, path_value):
    # given
    ingest(
        _event(
            "identify", T0, userId="u-11", traits={"email": "Ada+News@example.com"}, messageId="m"
        )
    )

    # when
    response = api_client.get(f"/api/v1/profiles/email:{path_value}")

    # then
    assert response.status_code == 200
    assert ("email", "ada+news@example.com") in _identifiers(response.json())


@pytest.mark.parametrize("suffix", ["", "/events"])
@pytest.mark.parametrize("path_id", ["user_id:%00", "email:a%00@b.com", "%00user_id:u-1"])
def test_nul_in_an_external_id_is_400_not_a_database_error(api_client, ada, path_id, suffix):
    # when
    response = api_client.get(f"/api/v1/profiles/{path_id}{suffix}")

    # then
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid input.",
        "errors": {"external_id": "Profile ids cannot contain a NUL character (%00)."},
    }


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("path", ["/api/v1/profiles", "/api/v1/profiles/user_id:u-1/events"])
@pytest.mark.parametrize("cursor", ["zzz", _b64("o=x"), _b64("p=not-a-time"), "é"])
def test_unreadable_cursor_is_400_with_a_message(api_client, ada, path, cursor):
    # when
    response = api_client.get(path, {"cursor": cursor})

    # then
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid input.",
        "errors": {
            "cursor": "Invalid cursor: use the next or previous link of a page as it was returned."
        },
    }


def test_events_without_original_timestamp_or_sent_at_answer_as_the_schema_says(
    ingest: Callable[..., None], api_client: Client, openapi: Any
) -> None:
    # given: a client that sends no timestamp, originalTimestamp or sentAt (all optional)
    ingest({"type": "track", "userId": "u-9", "event": "Viewed", "messageId": "m-bare"})

    # when
    response = api_client.get("/api/v1/profiles/user_id:u-9/events")

    # then: both are null, and the schema of the answer allows it
    assert response.status_code == 200
    body = response.json()
    assert [(e["originalTimestamp"], e["sentAt"]) for e in body["results"]] == [(None, None)]
    schema = openapi.response_schema("/api/v1/profiles/{external_id}/events/", "get", 200)
    assert openapi.errors(schema, body) == []


@pytest.mark.parametrize("value", ["null", "0", "-1", "501", "ten", "5.0", " 5", ""])
def test_a_limit_that_is_no_whole_number_in_bounds_is_400_naming_it(
    api_client: Client, ada: Profile, openapi: Any, value: str
) -> None:
    # when
    response = api_client.get(f"/api/v1/profiles?limit={quote(value)}")

    # then: refused, not taken as the default page size
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid input.",
        "errors": {"limit": f"limit must be a whole number from 1 to 500, got {value!r}."},
    }
    schema = openapi.response_schema("/api/v1/profiles/", "get", 400)
    assert openapi.errors(schema, response.json()) == []


def test_the_schema_declares_limit_as_an_integer_with_its_bounds(openapi: Any) -> None:
    def limit(path: str) -> dict[str, Any]:
        parameters = openapi.operation(path, "get")["parameters"]
        return next(p["schema"] for p in parameters if p["name"] == "limit")

    assert limit("/api/v1/profiles/") == {
        "type": "integer",
        "minimum": 1,
        "maximum": 500,
        "default": 50,
    }
    assert limit("/api/v1/profiles/{external_id}/events/") == {
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
        "default": 100,
    }

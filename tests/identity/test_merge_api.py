from __future__ import annotations

from typing import Any

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from apps.api_auth.services import api_token_create
from apps.identity.models import Identifier, Profile, ProfileMerge

pytestmark = pytest.mark.django_db


def _client(*perms: str) -> Client:
    user = get_user_model().objects.create_user(f"user-{len(perms)}-{'-'.join(perms)}"[:150])
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    _, raw = api_token_create(name="t", user=user)
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


@pytest.fixture
def people(post_events: Any) -> dict[str, Any]:
    post_events("/v1/identify", {"userId": "ann", "traits": {"email": "ann@example.com"}})
    post_events("/v1/track", {"anonymousId": "phone", "event": "Viewed"})
    post_events("/v1/identify", {"userId": "bob"})
    return {
        k: Identifier.objects.get(type=t, value=v).profile_id
        for k, t, v in [
            ("ann", "user_id", "ann"),
            ("phone", "anonymous_id", "phone"),
            ("bob", "user_id", "bob"),
        ]
    }


def _post(client: Client, path: str, body: Any = None) -> Any:
    return client.post(path, data=orjson.dumps(body or {}), content_type="application/json")


def test_merge_and_split_through_the_api(people: dict[str, Any]) -> None:
    client = _client("identity.view_profile", "identity.change_profile")

    # when two profiles are merged by external ids
    response = _post(
        client,
        "/api/v1/profiles/merge",
        {"profiles": ["anonymous_id:phone", "email:ann@example.com"], "note": "same phone"},
    )

    # then the merge is returned and visible in both profiles' history
    assert response.status_code == 200, response.content
    merge = response.json()
    assert (merge["survivor"], merge["absorbed"]) == (str(people["ann"]), str(people["phone"]))
    assert merge["reason"] == "admin" and merge["actor"].startswith("user-")
    assert merge["details"] == {"note": "same phone", "via": "api"}
    detail = client.get("/api/v1/profiles/anonymous_id:phone").json()
    assert detail["id"] == str(people["ann"])
    assert [m["id"] for m in detail["merges"]] == [merge["id"]]

    # when the absorbed profile is split out again
    response = _post(client, f"/api/v1/profiles/id:{people['phone']}/split")

    # then it is live again with its identifier, and the merge is marked undone
    assert response.status_code == 200, response.content
    restored = response.json()
    assert restored["id"] == str(people["phone"]) and restored["merged_into"] is None
    assert restored["identifiers"] == [{"type": "anonymous_id", "value": "phone"}]
    assert restored["merges"][0]["undone_at"] is not None
    assert client.get("/api/v1/profiles/anonymous_id:phone").json()["id"] == str(people["phone"])


def test_merge_refused_by_safety_rules_is_409_and_changes_nothing(people: dict[str, Any]) -> None:
    client = _client("identity.view_profile", "identity.change_profile")
    response = _post(client, "/api/v1/profiles/merge", {"profiles": ["user_id:ann", "user_id:bob"]})
    assert response.status_code == 409
    assert response.json()["detail"] == "Not merged: the profiles have different user ids."
    assert not ProfileMerge.objects.exists()


def test_forcing_needs_the_force_permission(people: dict[str, Any]) -> None:
    body = {"profiles": ["user_id:ann", "user_id:bob"], "force": True}
    plain = _client("identity.view_profile", "identity.change_profile")
    assert _post(plain, "/api/v1/profiles/merge", body).status_code == 403
    forcer = _client(
        "identity.view_profile", "identity.change_profile", "identity.force_merge_profile"
    )
    response = _post(forcer, "/api/v1/profiles/merge", body)
    assert response.status_code == 200
    assert response.json()["forced"] is True
    assert Profile.objects.live().count() == 2  # ann+bob, phone


def test_read_only_tokens_cannot_merge_or_split(people: dict[str, Any]) -> None:
    reader = _client("identity.view_profile")
    response = _post(
        reader, "/api/v1/profiles/merge", {"profiles": ["user_id:ann", "anonymous_id:phone"]}
    )
    assert response.status_code == 403
    assert _post(reader, f"/api/v1/profiles/id:{people['phone']}/split").status_code == 403
    assert Client().post("/api/v1/profiles/merge").status_code == 401
    assert not ProfileMerge.objects.exists()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"profiles": ["user_id:ann"]}, 400),
        ({"profiles": ["user_id:ann", "nickname:x"]}, 400),
        ({"profiles": ["user_id:ann", "user_id:nobody"]}, 404),
        ({"profiles": ["user_id:ann", "user_id:ann"]}, 409),
    ],
)
def test_bad_merge_requests_get_clear_errors(
    people: dict[str, Any], body: Any, status: int
) -> None:
    client = _client("identity.view_profile", "identity.change_profile")
    response = _post(client, "/api/v1/profiles/merge", body)
    assert response.status_code == status
    assert "detail" in response.json()


def test_split_of_a_live_profile_is_409(people: dict[str, Any]) -> None:
    client = _client("identity.view_profile", "identity.change_profile")
    response = _post(client, "/api/v1/profiles/user_id:ann/split")
    assert response.status_code == 409
    assert response.json() == {"detail": "This profile was not merged into another one."}


@pytest.mark.parametrize("external_id", ["user_id:\x00", "email:a\x00@b.com"])
def test_nul_in_a_merge_or_split_id_is_400(people: dict[str, Any], external_id: str) -> None:
    # given
    client = _client("identity.view_profile", "identity.change_profile")

    # when
    merge = _post(client, "/api/v1/profiles/merge", {"profiles": ["user_id:ann", external_id]})
    split = _post(client, f"/api/v1/profiles/{external_id.replace(chr(0), '%00')}/split")

    # then
    assert merge.status_code == 400
    assert split.status_code == 400
    assert split.json()["errors"] == {
        "external_id": "Profile ids cannot contain a NUL character (%00)."
    }
    assert not ProfileMerge.objects.exists()


@pytest.mark.parametrize("profiles", [["", ""], ["user_id:ann", ""], ["user_id:ann", "user_id:"]])
def test_merge_with_empty_ids_is_400_and_the_schema_refuses_them(
    people: dict[str, Any], openapi: Any, profiles: list[str]
) -> None:
    # given
    client = _client("identity.view_profile", "identity.change_profile")

    # when
    response = _post(client, "/api/v1/profiles/merge", {"profiles": profiles})

    # then: the server refuses them, and so does the schema (it allowed any string)
    assert response.status_code == 400
    assert not ProfileMerge.objects.exists()
    assert openapi.errors(openapi.component("ProfileMergeInput"), {"profiles": profiles})
    assert openapi.errors(openapi.response_schema("/api/v1/profiles/merge/", "post", 400), {}) == [
        "'detail' is a required property"
    ]
    error = openapi.response_schema("/api/v1/profiles/merge/", "post", 400)
    assert openapi.errors(error, response.json()) == []


def test_a_merge_the_rules_refuse_is_a_documented_409(people: dict[str, Any], openapi: Any) -> None:
    # given: two different account ids, which the safety rules keep apart
    client = _client("identity.view_profile", "identity.change_profile")

    # when
    response = _post(client, "/api/v1/profiles/merge", {"profiles": ["user_id:ann", "user_id:bob"]})

    # then
    assert response.status_code == 409
    responses = openapi.operation("/api/v1/profiles/merge/", "post")["responses"]
    assert sorted(responses) == ["200", "400", "401", "403", "404", "409"]
    assert (
        openapi.errors(
            openapi.response_schema("/api/v1/profiles/merge/", "post", 409), response.json()
        )
        == []
    )

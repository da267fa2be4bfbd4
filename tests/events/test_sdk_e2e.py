"""End to end with the real server-side SDKs: Segment's and RudderStack's Python clients
post to a live server, and the result is read back through the profile API over HTTP.

Celery is eager in tests, so each ingestion request has processed its events (after
commit, in the server thread) before it answers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import rudderstack.analytics as rudder_analytics
import segment.analytics as segment_analytics
from rudderstack.analytics.request import APIError as RudderAPIError
from segment.analytics.request import APIError as SegmentAPIError

from apps.api_auth.services import api_token_create, service_user_ensure
from apps.events.auth import source_create
from apps.events.models import Event

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
SDKS = {
    "segment": (segment_analytics.Client, SegmentAPIError),
    "rudderstack": (rudder_analytics.Client, RudderAPIError),
}
MODES = [
    pytest.param("segment", True, False, id="segment-gzip-queued"),
    pytest.param("segment", False, True, id="segment-plain-sync"),
    pytest.param("rudderstack", True, False, id="rudderstack-gzip-queued"),
    pytest.param("rudderstack", False, True, id="rudderstack-plain-sync"),
]


def _sdk_client(sdk: str, write_key: str, host: str, **options: Any) -> Any:
    client_class, _ = SDKS[sdk]
    return client_class(write_key, host=host, max_retries=1, upload_interval=0.1, **options)


def _close(client: Any) -> None:
    client.flush()
    if not client.sync_mode:
        client.join()


def _api_get(live_server: Any, token: str, path: str) -> requests.Response:
    return requests.get(
        f"{live_server.url}/api/v1/{path}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def _token() -> str:
    user = service_user_ensure(name="e2e", read_only=True)
    _, raw = api_token_create(name="e2e", user=user)
    return raw


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _send_every_call(client: Any) -> None:
    """A visitor on two devices who signs up; every call type of the spec."""
    client.page(
        anonymous_id="anon-laptop",
        name="Pricing",
        category="Docs",
        properties={"path": "/pricing"},
        timestamp=_at(-60),
    )
    client.page(anonymous_id="anon-phone", name="Home", properties={"path": "/"}, timestamp=_at(0))
    client.identify(
        user_id="u-e2e",
        anonymous_id="anon-phone",
        traits={"email": "Ada@Example.com", "name": "Ada", "plan": "pro"},
        timestamp=_at(1),
    )
    client.track(
        user_id="u-e2e",
        event="Order Completed",
        properties={"total": 42.5, "currency": "EUR", "items": [{"sku": "A-1", "qty": 2}]},
        timestamp=_at(2),
    )
    client.screen(user_id="u-e2e", name="Settings", properties={"tab": "privacy"}, timestamp=_at(3))
    client.group(
        user_id="u-e2e",
        group_id="acme",
        traits={"name": "Acme Inc", "plan": "team"},
        timestamp=_at(4),
    )
    client.alias(previous_id="anon-laptop", user_id="u-e2e", timestamp=_at(5))


@pytest.mark.parametrize(("sdk", "gzip", "sync_mode"), MODES)
def test_every_sdk_call_reaches_the_profile(live_server, sdk, gzip, sync_mode):
    # given
    source, source_key = source_create(name=f"Backend {sdk}", write_key=f"wk_e2e_{sdk}")
    token = _token()
    errors: list[Any] = []
    client = _sdk_client(
        sdk,
        source_key,
        live_server.url,
        gzip=gzip,
        sync_mode=sync_mode,
        on_error=lambda error, batch: errors.append(error),
    )

    # when
    try:
        _send_every_call(client)
    finally:
        _close(client)

    # then: one profile with both devices, the user id and the email
    assert errors == []
    profile = _api_get(live_server, token, "profiles/email:ada@example.com")
    assert profile.status_code == 200
    body = profile.json()
    assert sorted((i["type"], i["value"]) for i in body["identifiers"]) == [
        ("anonymous_id", "anon-laptop"),
        ("anonymous_id", "anon-phone"),
        ("email", "ada@example.com"),
        ("user_id", "u-e2e"),
    ]
    # Group traits describe the company, not the person.
    assert body["traits"] == {"email": "Ada@Example.com", "name": "Ada", "plan": "pro"}
    assert _api_get(live_server, token, "profiles/anonymous_id:anon-laptop").json() == body

    # then: every event, newest first, as it was sent
    listed = _api_get(live_server, token, "profiles/user_id:u-e2e/events")
    assert listed.status_code == 200
    events = listed.json()["results"]
    assert listed.json()["next"] is None
    assert [(e["type"], e["event"] or e["name"]) for e in events] == [
        ("alias", ""),
        ("group", ""),
        ("screen", "Settings"),
        ("track", "Order Completed"),
        ("identify", ""),
        ("page", "Home"),
        ("page", "Pricing"),
    ]
    alias, group, screen, track, identify, home, pricing = events
    assert (alias["previousId"], alias["userId"]) == ("anon-laptop", "u-e2e")
    assert (group["groupId"], group["traits"]) == ("acme", {"name": "Acme Inc", "plan": "team"})
    assert screen["properties"] == {"tab": "privacy"}
    assert track["properties"] == {
        "total": 42.5,
        "currency": "EUR",
        "items": [{"sku": "A-1", "qty": 2}],
    }
    assert (identify["userId"], identify["anonymousId"]) == ("u-e2e", "anon-phone")
    assert (home["anonymousId"], home["properties"]) == ("anon-phone", {"path": "/"})
    assert (pricing["anonymousId"], pricing["properties"]) == ("anon-laptop", {"path": "/pricing"})
    assert {e["context"]["library"]["name"] for e in events} == {"analytics-python"}
    assert len({e["messageId"] for e in events}) == 7

    # then: the SDK's times, corrected for its clock by its own sentAt
    for event, minutes in zip(events, [5, 4, 3, 2, 1, 0, -60], strict=True):
        original = datetime.fromisoformat(event["originalTimestamp"])
        sent_at = datetime.fromisoformat(event["sentAt"])
        received_at = datetime.fromisoformat(event["receivedAt"])
        assert original == _at(minutes)
        assert datetime.fromisoformat(event["timestamp"]) == received_at - (sent_at - original)
    assert Event.objects.filter(source=source).count() == 7


@pytest.mark.parametrize("sdk", list(SDKS))
def test_sdk_identify_traits_reach_the_profile(live_server, sdk):
    # given: RudderStack's SDK sends identify traits in context.traits only
    _, source_key = source_create(name=f"Traits {sdk}", write_key=f"wk_traits_{sdk}")
    token = _token()
    client = _sdk_client(sdk, source_key, live_server.url, sync_mode=True)

    # when
    client.identify(user_id="u-traits", traits={"company": "Acme", "seats": 12}, timestamp=T0)
    client.identify(user_id="u-traits", traits={"seats": 15}, timestamp=_at(1))

    # then
    body = _api_get(live_server, token, "profiles/user_id:u-traits").json()
    assert body["traits"] == {"company": "Acme", "seats": 15}
    events = _api_get(live_server, token, "profiles/user_id:u-traits/events").json()["results"]
    assert (body["first_seen"], body["last_seen"]) == (
        events[-1]["timestamp"],
        events[0]["timestamp"],
    )


@pytest.mark.parametrize("sdk", list(SDKS))
def test_sdk_retry_of_the_same_message_is_stored_once(live_server, sdk):
    # given
    _, source_key = source_create(name=f"Retry {sdk}", write_key=f"wk_retry_{sdk}")
    client = _sdk_client(sdk, source_key, live_server.url, sync_mode=True)

    # when: the SDK resends a message it thinks was lost
    for _ in range(2):
        client.track(user_id="u-1", event="Paid", message_id="msg-once", timestamp=T0)

    # then
    assert list(Event.objects.values_list("message_id", flat=True)) == ["msg-once"]


@pytest.mark.parametrize("sdk", list(SDKS))
@pytest.mark.parametrize("disabled", [False, True], ids=["unknown-key", "disabled-source"])
def test_sdk_sync_call_with_a_bad_write_key_raises_our_error(live_server, sdk, disabled):
    # given
    key = "wk_does_not_exist"
    if disabled:
        source_create(name="Retired", write_key="wk_retired", enabled=False)
        key = "wk_retired"
    _, api_error = SDKS[sdk]
    client = _sdk_client(sdk, key, live_server.url, sync_mode=True)

    # when
    with pytest.raises(api_error) as raised:
        client.track(user_id="u-1", event="Signed Up")

    # then
    assert raised.value.status == 401
    assert raised.value.code == "invalid_write_key"
    assert raised.value.message == "Unknown or disabled write key."
    assert Event.objects.count() == 0


@pytest.mark.parametrize("sdk", list(SDKS))
def test_sdk_queued_calls_with_a_bad_write_key_report_our_error(live_server, sdk):
    # given
    _, api_error = SDKS[sdk]
    failures: list[tuple[Any, list[Any]]] = []
    client = _sdk_client(
        sdk,
        "wk_does_not_exist",
        live_server.url,
        on_error=lambda error, batch: failures.append((error, batch)),
    )

    # when
    try:
        client.identify(user_id="u-1", traits={"name": "Ada"})
        client.track(user_id="u-1", event="Signed Up")
    finally:
        _close(client)

    # then: reported once per batch, not retried (401 is not worth retrying)
    assert failures
    assert sum(len(batch) for _, batch in failures) == 2
    for error, _ in failures:
        assert isinstance(error, api_error)
        assert (error.status, error.code, error.message) == (
            401,
            "invalid_write_key",
            "Unknown or disabled write key.",
        )
    assert Event.objects.count() == 0

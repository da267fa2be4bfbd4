"""The Segment HTTP tracking API, over HTTP: routes, auth, bodies, validation, times."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import orjson
import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.events.models import Event, RejectedEvent, Source
from tests.events.factories import WEB_WRITE_KEY, SourceFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
SUCCESS = b'{"success":true}'
LIMIT = 4 * 1024 * 1024

# A minimal valid event of each type (what the short routes need besides the type).
VALID = {
    "identify": {"userId": "u1", "traits": {"plan": "pro"}},
    "track": {"userId": "u1", "event": "Order Completed"},
    "page": {"anonymousId": "a1", "name": "Home"},
    "screen": {"anonymousId": "a1", "name": "Settings"},
    "group": {"userId": "u1", "groupId": "g1"},
    "alias": {"userId": "u1", "previousId": "a1"},
}
MOBILE_WRITE_KEY = "wk_test_mobile"

SINGLE_ROUTES = [
    ("/v1/identify", "identify"),
    ("/v1/i", "identify"),
    ("/v1/track", "track"),
    ("/v1/t", "track"),
    ("/v1/page", "page"),
    ("/v1/p", "page"),
    ("/v1/screen", "screen"),
    ("/v1/s", "screen"),
    ("/v1/group", "group"),
    ("/v1/g", "group"),
    ("/v1/alias", "alias"),
    ("/v1/a", "alias"),
]
BATCH_ROUTES = ["/v1/batch", "/v1/b", "/v1/import"]


def _basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data)


def _json(response: Any) -> Any:
    return orjson.loads(response.content)


def _batch_of_each_type() -> list[dict[str, Any]]:
    return [{"type": kind, "messageId": f"m-{kind}", **body} for kind, body in VALID.items()]


@pytest.fixture
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """The server's clock: receivedAt is exactly NOW."""
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    return NOW


@pytest.fixture
def other_source(db: None) -> Source:
    return SourceFactory(name="Mobile", write_key=MOBILE_WRITE_KEY)


# --- Routes -------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "kind"), SINGLE_ROUTES)
def test_single_event_route_stores_one_event_of_its_type(post_events, source, path, kind):
    # given
    body = {"messageId": "m-1", **VALID[kind]}

    # when
    response = post_events(path, body)

    # then
    assert response.status_code == 200
    assert response.content == SUCCESS
    assert response["Content-Type"] == "application/json"
    event = Event.objects.get()
    assert (event.source_id, event.type, event.message_id) == (source.id, kind, "m-1")
    assert RejectedEvent.objects.count() == 0


@pytest.mark.parametrize(("path", "kind"), [r for r in SINGLE_ROUTES if len(r[0]) == 5])
def test_short_form_accepts_text_plain_body_with_write_key_inside(
    client, source, django_capture_on_commit_callbacks, path, kind
):
    # given: what analytics.js sends to avoid a CORS preflight
    body = orjson.dumps({"writeKey": WEB_WRITE_KEY, "messageId": "m-1", **VALID[kind]})

    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(path, data=body, content_type="text/plain;charset=UTF-8")

    # then
    assert response.status_code == 200
    assert response.content == SUCCESS
    event = Event.objects.get()
    assert (event.type, event.source_id) == (kind, source.id)
    assert "writeKey" not in event.extra


def test_short_batch_form_accepts_text_plain(client, source):
    # given
    body = orjson.dumps({"writeKey": WEB_WRITE_KEY, "batch": _batch_of_each_type()})

    # when
    response = client.post("/v1/b", data=body, content_type="text/plain")

    # then
    assert response.status_code == 200
    assert response.content == SUCCESS
    assert sorted(Event.objects.values_list("type", flat=True)) == sorted(VALID)


@pytest.mark.parametrize("path", BATCH_ROUTES)
def test_batch_routes_store_every_event_type(post_events, source, path):
    # when
    response = post_events(path, {"batch": _batch_of_each_type()})

    # then
    assert response.status_code == 200
    assert response.content == SUCCESS
    stored = dict(Event.objects.values_list("message_id", "type"))
    assert stored == {f"m-{kind}": kind for kind in VALID}


def test_single_route_type_wins_over_the_body_type(post_events):
    # when
    response = post_events("/v1/track", {"type": "identify", "userId": "u1", "event": "Signed Up"})

    # then
    assert response.status_code == 200
    event = Event.objects.get()
    assert (event.type, event.event) == ("track", "Signed Up")


def test_unknown_route_is_404(post_events):
    # when
    response = post_events("/v1/unknown", VALID["track"])

    # then
    assert response.status_code == 404
    assert Event.objects.count() == 0


@pytest.mark.parametrize("path", ["/v1/track", "/v1/t", "/v1/batch", "/beacon/v1/batch"])
def test_get_on_an_ingestion_route_is_405(client, source, path):
    # when
    response = client.get(path, {"writeKey": WEB_WRITE_KEY})

    # then
    assert response.status_code == 405
    assert _json(response)["code"] == "method_not_allowed"
    assert Event.objects.count() == 0
    assert RejectedEvent.objects.count() == 0


@pytest.mark.parametrize(
    "body", [b'{"series": [{"type": "Counter", "metric": "x", "value": 1}]}', b"not json", b""]
)
def test_metrics_route_accepts_and_discards(client, body):
    # when: analytics.js telemetry, with no write key at all
    response = client.post("/v1/m", data=body, content_type="text/plain")

    # then
    assert response.status_code == 200
    assert response.content == SUCCESS
    assert Event.objects.count() == 0
    assert RejectedEvent.objects.count() == 0


@pytest.mark.parametrize("path", ["/beacon/v1/batch", "/beacon/v1/b"])
def test_beacon_route_takes_the_write_key_from_the_query(client, source, path):
    # given: navigator.sendBeacon cannot set headers
    body = orjson.dumps({"batch": [{"type": "track", **VALID["track"], "messageId": "m-1"}]})

    # when
    response = client.post(f"{path}?writeKey={WEB_WRITE_KEY}", data=body, content_type="text/plain")

    # then
    assert response.status_code == 200
    assert response.content == SUCCESS
    event = Event.objects.get()
    assert (event.source_id, event.type, event.event) == (source.id, "track", "Order Completed")


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/t", "/v1/m", "/beacon/v1/batch"])
def test_cors_preflight_allows_browsers_to_post(client, path):
    # when
    response = client.options(
        path,
        HTTP_ORIGIN="https://shop.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type,content-encoding,authorization",
    )

    # then
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response["Access-Control-Allow-Methods"]
    allowed = {h.strip() for h in response["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "content-encoding", "authorization"} <= allowed
    assert Event.objects.count() == 0


def test_cross_origin_post_response_carries_cors_header(post_events):
    # when
    response = post_events("/v1/track", VALID["track"], HTTP_ORIGIN="https://shop.example.com")

    # then
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"


def test_management_api_is_not_exposed_cross_origin(client):
    # when
    response = client.options(
        "/api/v1/profiles",
        HTTP_ORIGIN="https://shop.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
    )

    # then
    assert "Access-Control-Allow-Origin" not in response


# --- Write keys -----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["basic", "body", "query"])
def test_write_key_is_read_from_basic_auth_body_or_query(client, source, where):
    # given
    body: dict[str, Any] = {**VALID["track"]}
    headers: dict[str, str] = {}
    query = ""
    if where == "basic":
        headers["HTTP_AUTHORIZATION"] = _basic(WEB_WRITE_KEY)
    elif where == "body":
        body["writeKey"] = WEB_WRITE_KEY
    else:
        query = f"?writeKey={WEB_WRITE_KEY}"

    # when
    response = client.post(
        f"/v1/track{query}", data=orjson.dumps(body), content_type="application/json", **headers
    )

    # then
    assert response.status_code == 200
    assert response.content == SUCCESS
    assert Event.objects.get().source_id == source.id


@pytest.mark.parametrize(
    ("basic", "body", "query", "winner"),
    [
        ("web", "mobile", "mobile", "web"),
        ("mobile", "web", "web", "mobile"),
        (None, "web", "mobile", "web"),
        (None, "mobile", "web", "mobile"),
        (None, None, "mobile", "mobile"),
        ("unknown", "web", "web", None),
        (None, "unknown", "web", None),
    ],
)
def test_write_key_precedence_is_basic_then_body_then_query(
    client, source, other_source, basic, body, query, winner
):
    # given
    keys = {"web": WEB_WRITE_KEY, "mobile": MOBILE_WRITE_KEY, "unknown": "wk_nope"}
    payload: dict[str, Any] = {**VALID["track"]}
    headers: dict[str, str] = {}
    if basic:
        headers["HTTP_AUTHORIZATION"] = _basic(keys[basic])
    if body:
        payload["writeKey"] = keys[body]

    # when
    response = client.post(
        f"/v1/track?writeKey={keys[query]}",
        data=orjson.dumps(payload),
        content_type="application/json",
        **headers,
    )

    # then
    if winner is None:
        assert response.status_code == 401
        assert _json(response)["code"] == "invalid_write_key"
        assert Event.objects.count() == 0
    else:
        assert response.status_code == 200
        expected = source if winner == "web" else other_source
        assert Event.objects.get().source_id == expected.id


def test_batch_write_key_in_body(client, source):
    # when
    response = client.post(
        "/v1/batch",
        data=orjson.dumps({"writeKey": WEB_WRITE_KEY, "batch": _batch_of_each_type()}),
        content_type="application/json",
    )

    # then
    assert response.status_code == 200
    assert Event.objects.filter(source=source).count() == len(VALID)


def test_missing_write_key_is_401_with_json_message(client, source):
    # when
    response = client.post(
        "/v1/track", data=orjson.dumps(VALID["track"]), content_type="application/json"
    )

    # then
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    message = (
        "No write key: send it as the HTTP Basic username, or as writeKey in the body "
        "or the query string."
    )
    assert _json(response) == {
        "success": False,
        "code": "missing_write_key",
        "message": message,
        "detail": message,
    }
    assert Event.objects.count() == 0
    assert RejectedEvent.objects.count() == 0


@pytest.mark.parametrize(
    "authorization",
    ["Basic !!!not-base64", "Basic " + base64.b64encode(b":secret").decode(), "Bearer abc"],
)
def test_unusable_authorization_header_counts_as_no_key(client, source, authorization):
    # when
    response = client.post(
        "/v1/track",
        data=orjson.dumps(VALID["track"]),
        content_type="application/json",
        HTTP_AUTHORIZATION=authorization,
    )

    # then
    assert response.status_code == 401
    assert _json(response)["code"] == "missing_write_key"
    assert Event.objects.count() == 0


def test_unknown_write_key_is_401_with_json_message(post_events):
    # when
    response = post_events("/v1/batch", {"batch": _batch_of_each_type()}, key="wk_unknown")

    # then
    assert response.status_code == 401
    assert _json(response) == {
        "success": False,
        "code": "invalid_write_key",
        "message": "Unknown or disabled write key.",
        "detail": "Unknown or disabled write key.",
    }
    assert Event.objects.count() == 0
    assert RejectedEvent.objects.count() == 0


@pytest.mark.parametrize("path", ["/v1/track", "/v1/batch"])
def test_disabled_source_is_401(post_events, source, path):
    # given
    source.enabled = False
    source.save()
    body = VALID["track"] if path == "/v1/track" else {"batch": _batch_of_each_type()}

    # when
    response = post_events(path, body)

    # then
    assert response.status_code == 401
    assert _json(response)["code"] == "invalid_write_key"
    assert _json(response)["message"] == "Unknown or disabled write key."
    assert Event.objects.count() == 0
    assert RejectedEvent.objects.count() == 0


@pytest.mark.parametrize("where", ["basic", "body", "query"])
def test_write_key_with_a_nul_character_is_401(client, source, where):
    # given: PostgreSQL cannot even compare such a string
    key = WEB_WRITE_KEY + "\x00"
    body: dict[str, Any] = {**VALID["track"]}
    headers: dict[str, str] = {}
    query = ""
    if where == "basic":
        headers["HTTP_AUTHORIZATION"] = _basic(key)
    elif where == "body":
        body["writeKey"] = key
    else:
        query = "?writeKey=" + key.replace("\x00", "%00")

    # when
    response = client.post(
        f"/v1/track{query}", data=orjson.dumps(body), content_type="application/json", **headers
    )

    # then
    assert response.status_code == 401
    assert _json(response)["code"] == "invalid_write_key"
    assert Event.objects.count() == 0


def test_unknown_key_is_401_even_when_the_body_is_not_json(post_events):
    # when
    response = post_events("/v1/track", b"{nope", key="wk_unknown")

    # then
    assert response.status_code == 401
    assert RejectedEvent.objects.count() == 0


# --- Bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compress", "encoding"),
    [(True, "gzip"), (True, "GZip"), (True, None), (False, None), (False, "identity")],
    ids=["gzip-header", "gzip-header-case", "gzip-sniffed", "plain", "identity"],
)
def test_body_may_be_gzip_or_plain(post_events, compress, encoding):
    # given
    data = orjson.dumps({"batch": _batch_of_each_type()})
    extra = {"HTTP_CONTENT_ENCODING": encoding} if encoding else {}

    # when
    response = post_events("/v1/batch", _gzip(data) if compress else data, **extra)

    # then
    assert response.status_code == 200
    assert response.content == SUCCESS
    assert Event.objects.count() == len(VALID)


@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]
)
def test_body_is_json_whatever_the_content_type(post_events, content_type):
    # when
    response = post_events("/v1/track", VALID["track"], content_type=content_type)

    # then
    assert response.status_code == 200
    assert Event.objects.get().event == "Order Completed"


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (b"\x1f\x8b\x08\x00garbage-after-magic", None),
        (b'{"batch": []}', "gzip"),
    ],
    ids=["corrupt-gzip", "plain-body-said-gzip"],
)
def test_invalid_gzip_is_400(post_events, source, body, encoding):
    # given
    extra = {"HTTP_CONTENT_ENCODING": encoding} if encoding else {}

    # when
    response = post_events("/v1/batch", body, **extra)

    # then
    assert response.status_code == 400
    message = "The body says it is gzip but could not be decompressed."
    assert _json(response) == {
        "success": False,
        "code": "invalid_json",
        "message": message,
        "detail": message,
    }
    rejected = RejectedEvent.objects.get()
    assert (rejected.source_id, rejected.reason, rejected.message, rejected.path) == (
        source.id,
        "invalid_json",
        message,
        "/v1/batch",
    )
    assert Event.objects.count() == 0


def test_unsupported_content_encoding_is_400(post_events):
    # when
    response = post_events("/v1/track", VALID["track"], HTTP_CONTENT_ENCODING="br")

    # then
    assert response.status_code == 400
    assert (
        _json(response)["message"] == "Unsupported Content-Encoding 'br'; send gzip or plain JSON."
    )
    assert Event.objects.count() == 0


def _padded_batch(size: int) -> bytes:
    """A valid one-event batch body of exactly ``size`` bytes."""
    head = orjson.dumps({"batch": [{"type": "track", **VALID["track"]}], "pad": ""})[:-2]
    padding = size - len(head) - 2
    return head + b"x" * padding + b'"}'


def test_body_of_exactly_the_limit_is_accepted(post_events):
    # given
    body = _padded_batch(LIMIT)
    assert len(body) == LIMIT

    # when
    response = post_events("/v1/batch", body)

    # then
    assert response.status_code == 200
    assert Event.objects.count() == 1


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip-bomb"])
def test_body_over_the_limit_is_413(post_events, source, compress):
    # given: one byte over, sent as is or as a tiny gzip that expands past the limit
    body = _padded_batch(LIMIT + 1)
    if compress:
        body = _gzip(body)
        assert len(body) < 10_000

    # when
    response = post_events("/v1/batch", body)

    # then
    assert response.status_code == 413
    message = f"The request body is over {LIMIT} bytes."
    assert _json(response) == {
        "success": False,
        "code": "too_large",
        "message": message,
        "detail": message,
    }
    rejected = RejectedEvent.objects.get()
    assert (rejected.source_id, rejected.reason, rejected.message) == (
        source.id,
        "too_large",
        f"Request body over {LIMIT} bytes.",
    )
    assert Event.objects.count() == 0


def test_declared_content_length_over_the_limit_is_413_before_reading(post_events):
    # when: the client announces 5 MB; the body is never read
    response = post_events("/v1/track", VALID["track"], CONTENT_LENGTH=str(5 * 1024 * 1024))

    # then
    assert response.status_code == 413
    assert _json(response)["code"] == "too_large"
    assert RejectedEvent.objects.get().reason == "too_large"
    assert Event.objects.count() == 0


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip-bomb"])
def test_body_over_the_limit_with_the_key_inside_is_413(client, source, compress):
    # given: analytics.js puts its key in the body, which is never parsed
    body = orjson.dumps({"writeKey": WEB_WRITE_KEY, "batch": [], "pad": "x" * LIMIT})
    if compress:
        body = _gzip(body)

    # when
    response = client.post("/v1/batch", data=body, content_type="text/plain")

    # then
    assert response.status_code == 413
    assert _json(response)["code"] == "too_large"
    assert Event.objects.count() == 0
    assert RejectedEvent.objects.count() == 0


def test_unknown_key_with_a_body_over_the_limit_is_401(post_events):
    # when
    response = post_events("/v1/batch", _padded_batch(LIMIT + 1), key="wk_unknown")

    # then
    assert response.status_code == 401
    assert RejectedEvent.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b"{not json",
            "The request body is not valid JSON "
            "(unexpected character, expected a string key at position 1).",
        ),
        (
            b"hello",
            "The request body is not valid JSON "
            "(unexpected character, expected a JSON value at position 0).",
        ),
        (
            b'{"type": "track"',
            "The request body is not valid JSON (unexpected end of data at position 16).",
        ),
        (b"", "The request body is empty; send a JSON object."),
        (b"null", "The request body is empty; send a JSON object."),
    ],
)
def test_body_that_is_not_json_is_400_and_recorded(post_events, source, body, message):
    # when
    response = post_events("/v1/track", body)

    # then
    assert response.status_code == 400
    assert _json(response) == {
        "success": False,
        "code": "invalid_json",
        "message": message,
        "detail": message,
    }
    rejected = RejectedEvent.objects.get()
    assert (rejected.source_id, rejected.reason, rejected.message) == (
        source.id,
        "invalid_json",
        message,
    )
    assert (rejected.path, rejected.payload) == ("/v1/track", body.decode())
    assert Event.objects.count() == 0


def test_body_with_nul_bytes_is_400_and_recorded_readably(post_events):
    # when
    response = post_events("/v1/batch", b"\x00\x00{")

    # then
    assert response.status_code == 400
    assert _json(response)["code"] == "invalid_json"
    assert RejectedEvent.objects.get().payload == "\ufffd\ufffd{"
    assert Event.objects.count() == 0


@pytest.mark.parametrize("body", [[VALID["track"]], "a string", 42, True])
@pytest.mark.parametrize("path", ["/v1/track", "/v1/batch"])
def test_json_that_is_not_an_object_is_400(post_events, body, path):
    # when
    response = post_events(path, body)

    # then
    assert response.status_code == 400
    assert _json(response)["code"] == "invalid_json"
    assert _json(response)["message"] == "The request body must be a JSON object."
    rejected = RejectedEvent.objects.get()
    assert (rejected.reason, rejected.payload) == ("invalid_json", orjson.dumps(body).decode())
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [{}, {"batch": {"0": VALID["track"]}}, {"batch": "[]"}, {"batch": None}, VALID["track"]],
    ids=["no-batch", "object", "string", "null", "single-event"],
)
@pytest.mark.parametrize("path", BATCH_ROUTES)
def test_batch_without_a_batch_list_is_400(post_events, source, body, path):
    # when
    response = post_events(path, body)

    # then
    assert response.status_code == 400
    message = "A batch body needs a 'batch' array of events."
    assert _json(response) == {
        "success": False,
        "code": "invalid_body",
        "message": message,
        "detail": message,
    }
    rejected = RejectedEvent.objects.get()
    assert (rejected.source_id, rejected.reason, rejected.path) == (source.id, "invalid_body", path)
    assert orjson.loads(rejected.payload) == body
    assert Event.objects.count() == 0


def test_empty_batch_is_200_and_stores_nothing(post_events):
    # when
    response = post_events("/v1/batch", {"batch": []})

    # then
    assert response.status_code == 200
    assert response.content == SUCCESS
    assert Event.objects.count() == 0
    assert RejectedEvent.objects.count() == 0


# --- Per-event validation ---------------------------------------------------------------


def test_mixed_batch_stores_the_valid_and_records_the_invalid(post_events, source):
    # given
    bad_track = {"type": "track", "userId": "u2", "messageId": "bad-1"}
    bad_type = {"type": "purchase", "userId": "u3", "messageId": "bad-2"}
    batch = [
        {"type": "identify", "userId": "u1", "messageId": "ok-1", "traits": {"plan": "pro"}},
        bad_track,
        {"type": "track", "userId": "u1", "event": "Clicked", "messageId": "ok-2"},
        bad_type,
        "not an event",
    ]

    # when
    response = post_events("/v1/batch", {"batch": batch})

    # then
    assert response.status_code == 200
    assert _json(response) == {
        "success": True,
        "accepted": 2,
        "rejected": [
            {
                "index": 1,
                "messageId": "bad-1",
                "reason": "A track event needs an 'event' name (a non-empty string).",
            },
            {
                "index": 3,
                "messageId": "bad-2",
                "reason": "type must be one of alias, group, identify, page, screen, track; "
                "got 'purchase'.",
            },
            {"index": 4, "messageId": "", "reason": "Each event must be a JSON object."},
        ],
    }
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["ok-1", "ok-2"]
    rows = {
        r.message_id: r
        for r in RejectedEvent.objects.filter(
            source=source, path="/v1/batch", reason="invalid_event"
        )
    }
    assert set(rows) == {"bad-1", "bad-2", ""}
    assert orjson.loads(rows["bad-1"].payload) == bad_track
    assert rows["bad-1"].event_type == "track"
    assert rows["bad-1"].message == "A track event needs an 'event' name (a non-empty string)."
    assert orjson.loads(rows["bad-2"].payload) == bad_type
    assert rows["bad-2"].event_type == "purchase"
    assert orjson.loads(rows[""].payload) == "not an event"


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (
            {"type": "click", "userId": "u1"},
            "type must be one of alias, group, identify, page, screen, track; got 'click'.",
        ),
        (
            {"userId": "u1"},
            "type must be one of alias, group, identify, page, screen, track; got 'None'.",
        ),
        ({"type": "track", "event": "X"}, "Every event needs a userId or an anonymousId."),
        (
            {"type": "track", "event": "X", "userId": "", "anonymousId": None},
            "Every event needs a userId or an anonymousId.",
        ),
        (
            {"type": "track", "userId": "u1"},
            "A track event needs an 'event' name (a non-empty string).",
        ),
        (
            {"type": "track", "userId": "u1", "event": "   "},
            "A track event needs an 'event' name (a non-empty string).",
        ),
        (
            {"type": "track", "userId": "u1", "event": 12},
            "A track event needs an 'event' name (a non-empty string).",
        ),
        ({"type": "alias", "userId": "u1"}, "An alias event needs a previousId."),
        ({"type": "group", "userId": "u1"}, "A group event needs a groupId."),
        (
            {"type": "track", "userId": "u1", "event": "X", "timestamp": "yesterday"},
            "timestamp is not a valid ISO-8601 date: 'yesterday'.",
        ),
        (
            {"type": "track", "userId": "u1", "event": "X", "timestamp": 1714564800},
            "timestamp must be an ISO-8601 date string, got int.",
        ),
        (
            {"type": "track", "userId": "u1", "event": "X", "sentAt": "2024-13-01T00:00:00Z"},
            "sentAt is not a valid ISO-8601 date: '2024-13-01T00:00:00Z'.",
        ),
        (
            {"type": "page", "userId": "u1", "originalTimestamp": "soon"},
            "originalTimestamp is not a valid ISO-8601 date: 'soon'.",
        ),
        (
            {"type": "track", "userId": "u1", "event": "X", "properties": ["a"]},
            "properties must be a JSON object.",
        ),
        (
            {"type": "track", "userId": "u1", "event": "X", "properties": "a=1"},
            "properties must be a JSON object.",
        ),
        ({"type": "identify", "userId": "u1", "traits": [1]}, "traits must be a JSON object."),
        ({"type": "identify", "userId": "u1", "context": 5}, "context must be a JSON object."),
        ({"type": "identify", "userId": {"id": 1}}, "userId must be a string or a number."),
        ({"type": "identify", "anonymousId": True}, "anonymousId must be a string or a number."),
        ({"type": "identify", "userId": "u" * 256}, "userId is longer than 255 characters."),
        ({"type": "page", "userId": "u1", "name": 5}, "name must be a string."),
        (
            {
                "type": "track",
                "userId": "u1",
                "event": "X",
                "timestamp": "0001-01-01T00:00:00+14:00",
            },
            "timestamp is out of range: '0001-01-01T00:00:00+14:00'.",
        ),
        (
            {"type": "track", "userId": "u1", "event": "X", "sentAt": "9999-12-31T23:59:59-12:00"},
            "sentAt is out of range: '9999-12-31T23:59:59-12:00'.",
        ),
        (
            {"type": "identify", "userId": "u1", "traits": {"name": "a\x00b"}},
            "Event contains a NUL character (\\u0000), which cannot be stored.",
        ),
        (
            {"type": "identify", "userId": "u1\x00"},
            "Event contains a NUL character (\\u0000), which cannot be stored.",
        ),
        (
            {"type": "track", "userId": "u1", "event": "X", "properties": {"k\x00": 1}},
            "Event contains a NUL character (\\u0000), which cannot be stored.",
        ),
        (
            {"type": "identify", "userId": "u1", "messageId": ["m"]},
            "messageId must be a string.",
        ),
    ],
)
def test_each_validation_rule_rejects_the_event(post_events, source, event, reason):
    # given
    event = {"messageId": "m-bad", **event}

    # when
    response = post_events("/v1/batch", {"batch": [event]})

    # then
    assert response.status_code == 200
    assert _json(response) == {
        "success": True,
        "accepted": 0,
        "rejected": [{"index": 0, "messageId": str(event["messageId"])[:255], "reason": reason}],
    }
    rejected = RejectedEvent.objects.get()
    assert (rejected.source_id, rejected.reason, rejected.message) == (
        source.id,
        "invalid_event",
        reason,
    )
    assert orjson.loads(rejected.payload) == event
    assert Event.objects.count() == 0


def test_single_route_rejection_is_still_200(post_events):
    # when
    response = post_events("/v1/alias", {"userId": "u1", "messageId": "m-1"})

    # then
    assert response.status_code == 200
    assert _json(response) == {
        "success": True,
        "accepted": 0,
        "rejected": [
            {"index": 0, "messageId": "m-1", "reason": "An alias event needs a previousId."}
        ],
    }
    rejected = RejectedEvent.objects.get()
    assert (rejected.event_type, rejected.path) == ("alias", "/v1/alias")
    assert Event.objects.count() == 0


def test_rejected_event_with_nul_in_its_type_and_id_is_recorded(post_events):
    # given
    event = {"type": "tr\x00ck", "userId": "u1", "messageId": "m\x001"}

    # when
    response = post_events("/v1/batch", {"batch": [event]})

    # then
    assert response.status_code == 200
    assert _json(response)["rejected"][0]["messageId"] == "m\x001"
    rejected = RejectedEvent.objects.get()
    assert (rejected.event_type, rejected.message_id) == ("tr\ufffdck", "m\ufffd1")
    assert orjson.loads(rejected.payload) == event


def test_escaped_backslash_u0000_text_is_not_a_nul(post_events):
    # given: the six characters \u0000, not the character U+0000
    traits = {"note": "\\u0000"}

    # when
    response = post_events("/v1/identify", {"userId": "u1", "messageId": "m-1", "traits": traits})

    # then
    assert response.content == SUCCESS
    assert Event.objects.get().traits == traits


def _event_of_size(size: int) -> dict[str, Any]:
    event = {"type": "track", "userId": "u1", "event": "Big", "properties": {"blob": ""}}
    event["properties"]["blob"] = "x" * (size - len(orjson.dumps(event)))
    assert len(orjson.dumps(event)) == size
    return event


def test_event_of_exactly_32kb_is_accepted(post_events):
    # when
    response = post_events("/v1/batch", {"batch": [_event_of_size(32 * 1024)]})

    # then
    assert response.status_code == 200
    assert response.content == SUCCESS
    assert Event.objects.count() == 1


def test_event_over_32kb_is_rejected_as_too_large(post_events):
    # given
    big = {**_event_of_size(32 * 1024 + 1), "messageId": "big"}
    big["properties"]["blob"] = big["properties"]["blob"][: -len(b',"messageId":"big"')]
    assert len(orjson.dumps(big)) == 32 * 1024 + 1
    small = {"type": "track", "userId": "u1", "event": "Small", "messageId": "small"}

    # when
    response = post_events("/v1/batch", {"batch": [big, small]})

    # then
    assert response.status_code == 200
    assert _json(response)["rejected"] == [
        {
            "index": 0,
            "messageId": "big",
            "reason": f"Event is {32 * 1024 + 1} bytes; the limit is {32 * 1024} bytes.",
        }
    ]
    assert list(Event.objects.values_list("message_id", flat=True)) == ["small"]
    rejected = RejectedEvent.objects.get()
    assert (rejected.reason, rejected.message_id) == ("too_large", "big")


# --- Idempotency -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/track", "/v1/t"])
def test_retried_single_event_is_stored_once(post_events, path):
    # given
    body = {**VALID["track"], "messageId": "m-retry"}
    first = post_events(path, body)

    # when
    second = post_events(path, {**body, "event": "Changed On Retry"})

    # then
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.content == SUCCESS
    event = Event.objects.get()
    assert (event.message_id, event.event) == ("m-retry", "Order Completed")


def test_retried_batch_is_stored_once(post_events):
    # given
    body = {"batch": _batch_of_each_type()}
    post_events("/v1/batch", body)

    # when
    response = post_events("/v1/batch", body, HTTP_X_RETRY_COUNT="1")

    # then
    assert response.status_code == 200
    assert response.content == SUCCESS
    assert Event.objects.count() == len(VALID)


def test_duplicate_message_id_within_one_batch_is_stored_once(post_events):
    # given
    batch = [
        {"type": "track", "userId": "u1", "event": "First", "messageId": "dup"},
        {"type": "track", "userId": "u1", "event": "Second", "messageId": "dup"},
        {"type": "track", "userId": "u1", "event": "Other", "messageId": "other"},
    ]

    # when
    response = post_events("/v1/batch", {"batch": batch})

    # then
    assert response.status_code == 200
    assert response.content == SUCCESS
    assert sorted(Event.objects.values_list("message_id", "event")) == [
        ("dup", "First"),
        ("other", "Other"),
    ]


def test_same_message_id_from_another_source_is_another_event(post_events, source, other_source):
    # given
    body = {**VALID["track"], "messageId": "shared"}
    post_events("/v1/track", body)

    # when
    response = post_events("/v1/track", body, key=MOBILE_WRITE_KEY)

    # then
    assert response.status_code == 200
    assert sorted(Event.objects.values_list("source_id", flat=True)) == sorted(
        [source.id, other_source.id]
    )


def test_numeric_message_id_is_deduplicated_as_its_string(post_events):
    # given
    post_events("/v1/track", {**VALID["track"], "messageId": 123})

    # when
    post_events("/v1/track", {**VALID["track"], "messageId": "123"})

    # then
    assert list(Event.objects.values_list("message_id", flat=True)) == ["123"]


def test_events_without_message_id_get_distinct_ones(post_events):
    # when
    post_events("/v1/batch", {"batch": [VALID["track"] | {"type": "track"}] * 2})

    # then
    ids = list(Event.objects.values_list("message_id", flat=True))
    assert len(ids) == 2
    assert len(set(ids)) == 2
    assert all(i.startswith("cdp-") for i in ids)


# --- Times ------------------------------------------------------------------------------


def _stored(message_id: str = "m-1") -> Event:
    return Event.objects.get(message_id=message_id)


def test_event_level_sent_at_corrects_clock_skew(post_events, frozen_now):
    # given: the device clock is 2 hours fast; the event was sent 30 s after it happened
    body = {
        **VALID["track"],
        "messageId": "m-1",
        "timestamp": "2024-05-01T14:00:00.000Z",
        "sentAt": "2024-05-01T14:00:30.000Z",
    }

    # when
    post_events("/v1/track", body)

    # then
    event = _stored()
    assert event.timestamp == datetime(2024, 5, 1, 11, 59, 30, tzinfo=UTC)
    assert event.original_timestamp == datetime(2024, 5, 1, 14, 0, 0, tzinfo=UTC)
    assert event.sent_at == datetime(2024, 5, 1, 14, 0, 30, tzinfo=UTC)
    assert event.received_at == frozen_now
    assert "sentAt" not in event.extra


def test_batch_level_sent_at_corrects_every_event(post_events, frozen_now):
    # given: device clock 1 day slow
    batch = [
        {
            **VALID["track"],
            "type": "track",
            "messageId": "m-1",
            "timestamp": "2024-04-30T11:00:00Z",
        },
        {
            **VALID["identify"],
            "type": "identify",
            "messageId": "m-2",
            "timestamp": "2024-04-30T11:59:59.250+00:00",
        },
    ]

    # when
    post_events("/v1/batch", {"batch": batch, "sentAt": "2024-04-30T12:00:00Z"})

    # then
    first, second = _stored("m-1"), _stored("m-2")
    assert first.timestamp == NOW - timedelta(hours=1)
    assert second.timestamp == NOW - timedelta(milliseconds=750)
    assert first.sent_at == second.sent_at == datetime(2024, 4, 30, 12, tzinfo=UTC)
    assert first.received_at == second.received_at == NOW


def test_event_sent_at_wins_over_batch_sent_at(post_events, frozen_now):
    # given
    event = {
        **VALID["track"],
        "type": "track",
        "messageId": "m-1",
        "timestamp": "2024-05-01T10:00:00Z",
        "sentAt": "2024-05-01T10:00:10Z",
    }

    # when
    post_events("/v1/batch", {"batch": [event], "sentAt": "2024-05-01T10:05:00Z"})

    # then
    stored = _stored()
    assert stored.timestamp == NOW - timedelta(seconds=10)
    assert stored.sent_at == datetime(2024, 5, 1, 10, 0, 10, tzinfo=UTC)


def test_original_timestamp_wins_over_timestamp(post_events, frozen_now):
    # given: what analytics.js sends
    body = {
        **VALID["track"],
        "messageId": "m-1",
        "originalTimestamp": "2024-05-01T09:00:00+02:00",
        "timestamp": "2024-05-01T23:00:00Z",
        "sentAt": "2024-05-01T07:00:05Z",
    }

    # when
    post_events("/v1/track", body)

    # then
    stored = _stored()
    assert stored.original_timestamp == datetime(2024, 5, 1, 7, tzinfo=UTC)
    assert stored.timestamp == NOW - timedelta(seconds=5)


def test_without_sent_at_the_client_timestamp_is_kept(post_events, frozen_now):
    # when
    post_events(
        "/v1/track", {**VALID["track"], "messageId": "m-1", "timestamp": "2023-01-02T03:04:05Z"}
    )

    # then
    stored = _stored()
    assert (
        stored.timestamp == stored.original_timestamp == datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)
    )
    assert stored.sent_at is None
    assert stored.received_at == NOW


def test_without_any_client_time_the_event_is_timed_on_arrival(post_events, frozen_now):
    # when
    post_events(
        "/v1/track", {**VALID["track"], "messageId": "m-1", "sentAt": "2020-01-01T00:00:00Z"}
    )

    # then
    stored = _stored()
    assert stored.timestamp == NOW
    assert stored.original_timestamp is None
    assert stored.sent_at == datetime(2020, 1, 1, tzinfo=UTC)
    assert stored.received_at == NOW


def test_naive_timestamps_are_read_as_utc(post_events, frozen_now):
    # when
    post_events(
        "/v1/track", {**VALID["track"], "messageId": "m-1", "timestamp": "2024-01-01T08:00:00"}
    )

    # then
    assert _stored().timestamp == datetime(2024, 1, 1, 8, tzinfo=UTC)


def test_import_keeps_historical_times(post_events, frozen_now):
    # given: a backfill of events from years ago, sent now
    batch = [
        {
            **VALID["track"],
            "type": "track",
            "messageId": "m-1",
            "timestamp": "2019-06-01T10:00:00Z",
        },
        {
            **VALID["track"],
            "type": "track",
            "messageId": "m-2",
            "timestamp": "2019-06-02T10:00:00Z",
            "sentAt": "2024-05-01T11:00:00Z",
        },
    ]

    # when
    response = post_events("/v1/import", {"batch": batch, "sentAt": "2024-05-01T12:00:00Z"})

    # then
    assert response.status_code == 200
    first, second = _stored("m-1"), _stored("m-2")
    assert first.timestamp == datetime(2019, 6, 1, 10, tzinfo=UTC)
    assert second.timestamp == datetime(2019, 6, 2, 10, tzinfo=UTC)
    assert first.sent_at == NOW
    assert second.sent_at == datetime(2024, 5, 1, 11, tzinfo=UTC)
    assert first.received_at == second.received_at == NOW


def test_the_same_batch_on_batch_is_skew_corrected(post_events, frozen_now):
    # given: the import test's first event, through /v1/batch instead
    batch = [
        {**VALID["track"], "type": "track", "messageId": "m-1", "timestamp": "2019-06-01T10:00:00Z"}
    ]

    # when
    post_events("/v1/batch", {"batch": batch, "sentAt": "2024-05-01T12:00:00Z"})

    # then
    assert _stored().timestamp == datetime(2019, 6, 1, 10, tzinfo=UTC)
    assert _stored().original_timestamp == datetime(2019, 6, 1, 10, tzinfo=UTC)


def test_invalid_batch_sent_at_rejects_its_events(post_events):
    # given
    batch = [{**VALID["track"], "type": "track", "messageId": "m-1"}]

    # when
    response = post_events("/v1/batch", {"batch": batch, "sentAt": "not a date"})

    # then
    assert response.status_code == 200
    assert _json(response)["rejected"] == [
        {
            "index": 0,
            "messageId": "m-1",
            "reason": "sentAt is not a valid ISO-8601 date: 'not a date'.",
        }
    ]
    assert Event.objects.count() == 0


# --- What is kept -------------------------------------------------------------------------


def test_batch_context_and_integrations_are_merged_into_events(post_events):
    # given
    batch = [
        {
            **VALID["track"],
            "type": "track",
            "messageId": "m-1",
            "context": {"locale": "fr-FR", "app": {"name": "Own"}},
        },
        {
            **VALID["track"],
            "type": "track",
            "messageId": "m-2",
            "integrations": {"All": False},
        },
    ]
    body = {
        "batch": batch,
        "context": {
            "library": {"name": "analytics-go", "version": "3.0"},
            "app": {"name": "Batch"},
        },
        "integrations": {"Mixpanel": False},
    }

    # when
    post_events("/v1/batch", body)

    # then
    first, second = _stored("m-1"), _stored("m-2")
    assert first.context == {
        "library": {"name": "analytics-go", "version": "3.0"},
        "app": {"name": "Own"},
        "locale": "fr-FR",
        "ip": "127.0.0.1",
    }
    assert first.extra == {"integrations": {"Mixpanel": False}}
    assert second.context == {
        "library": {"name": "analytics-go", "version": "3.0"},
        "app": {"name": "Batch"},
        "ip": "127.0.0.1",
    }
    assert second.extra == {"integrations": {"All": False}}


def test_client_ip_in_context_is_kept(post_events):
    # when
    post_events(
        "/v1/track",
        {**VALID["track"], "messageId": "m-1", "context": {"ip": "203.0.113.9"}},
        REMOTE_ADDR="198.51.100.1",
    )

    # then
    assert _stored().context == {"ip": "203.0.113.9"}


def test_every_field_of_an_event_is_kept(post_events, source, frozen_now):
    # given
    body = {
        "type": "page",
        "messageId": "m-1",
        "userId": 42,
        "anonymousId": "anon-1",
        "name": "Pricing",
        "category": "Docs",
        "properties": {"path": "/pricing", "nested": {"a": [1, 2.5, None, True]}},
        "context": {"page": {"url": "https://example.com/pricing"}},
        "channel": "browser",
        "version": 2,
        "timestamp": "2024-05-01T11:59:00Z",
    }

    # when
    post_events("/v1/p", body)

    # then
    event = _stored()
    assert {
        "source_id": event.source_id,
        "type": event.type,
        "name": event.name,
        "event": event.event,
        "user_id": event.user_id,
        "anonymous_id": event.anonymous_id,
        "properties": event.properties,
        "context": event.context,
        "extra": event.extra,
        "timestamp": event.timestamp,
    } == {
        "source_id": source.id,
        "type": "page",
        "name": "Pricing",
        "event": "",
        "user_id": "42",
        "anonymous_id": "anon-1",
        "properties": {"path": "/pricing", "nested": {"a": [1, 2.5, None, True]}},
        "context": {"page": {"url": "https://example.com/pricing"}, "ip": "127.0.0.1"},
        "extra": {"category": "Docs", "channel": "browser", "version": 2},
        "timestamp": datetime(2024, 5, 1, 11, 59, tzinfo=UTC),
    }


def test_accepted_events_are_processed_into_profiles(post_events):
    # when
    post_events("/v1/batch", {"batch": _batch_of_each_type()})

    # then
    assert Event.objects.filter(processed_at__isnull=True).count() == 0
    assert Event.objects.filter(profile__isnull=True).count() == 0


# --- Properties ---------------------------------------------------------------------------

_json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)
_TYPES = ["identify", "track", "page", "screen", "group", "alias"]
_no_id_events = st.builds(
    lambda extra, kind: {**extra, **kind},
    st.dictionaries(
        st.text(max_size=12).filter(lambda k: k not in ("userId", "anonymousId")),
        _json_values,
        max_size=6,
    ),
    st.just({}) | st.sampled_from(_TYPES).map(lambda t: {"type": t}),
)
# Ordinary times, and the ends of the calendar, in zones as far from UTC as exist.
_iso_times = st.builds(
    lambda moment, zone: moment.replace(tzinfo=zone).isoformat(),
    st.datetimes()
    | st.sampled_from([datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)]),
    st.sampled_from([UTC, dt_timezone(timedelta(hours=14)), dt_timezone(-timedelta(hours=12))]),
)
_objects = st.dictionaries(st.text(max_size=8), _json_values, max_size=4)
# Mostly valid events, so that most examples get as far as the times and the insert.
_event_shapes = st.fixed_dictionaries(
    {
        "type": st.sampled_from(_TYPES),
        "userId": st.text(min_size=1, max_size=8) | st.integers(-(2**63), 2**63 - 1),
        "event": st.text(min_size=1, max_size=8),
        "previousId": st.text(min_size=1, max_size=8),
        "groupId": st.text(min_size=1, max_size=8),
    },
    optional={
        "anonymousId": st.text(max_size=8),
        "name": st.text(max_size=8),
        "timestamp": _iso_times,
        "originalTimestamp": _iso_times,
        "sentAt": _iso_times,
        "properties": _objects,
        "traits": _objects,
        "context": _objects,
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(event=_no_id_events)
def test_any_event_without_ids_is_rejected_and_never_stored(client, source, event):
    # when
    response = client.post(
        "/v1/batch",
        data=orjson.dumps({"batch": [event]}),
        content_type="application/json",
        HTTP_AUTHORIZATION=_basic(WEB_WRITE_KEY),
    )

    # then
    assert response.status_code == 200
    body = _json(response)
    assert body["success"] is True
    assert body["accepted"] == 0
    assert len(body["rejected"]) == 1
    assert Event.objects.count() == 0


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=200) | st.binary(max_size=200).map(_gzip))
@pytest.mark.parametrize("path", ["/v1/batch", "/v1/t"])
def test_arbitrary_bytes_never_cause_a_server_error(client, source, path, data):
    # when
    response = client.post(
        path, data=data, content_type="text/plain", HTTP_AUTHORIZATION=_basic(WEB_WRITE_KEY)
    )

    # then
    assert response.status_code in (200, 400)
    assert _json(response)["success"] is (response.status_code == 200)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(event=_event_shapes, batch_sent_at=st.none() | _iso_times)
def test_arbitrary_event_shapes_are_stored_or_rejected_never_errors(
    client, source, event, batch_sent_at
):
    # given
    events_before = Event.objects.count()
    rejected_before = RejectedEvent.objects.count()

    # when
    response = client.post(
        "/v1/batch",
        data=orjson.dumps({"batch": [event], "sentAt": batch_sent_at}),
        content_type="application/json",
        HTTP_AUTHORIZATION=_basic(WEB_WRITE_KEY),
    )

    # then: exactly one of stored or recorded as rejected
    assert response.status_code == 200
    stored = response.content == SUCCESS
    assert Event.objects.count() == events_before + stored
    assert RejectedEvent.objects.count() == rejected_before + (not stored)


def test_multi_member_gzip_body_is_read_whole(post_events: Any) -> None:
    # given a body compressed as two concatenated gzip members (as streaming clients send)
    body = orjson.dumps(
        {"batch": [{"type": "track", "userId": "gz", "event": f"E{i}"} for i in range(2)]}
    )
    data = gzip.compress(body[:20]) + gzip.compress(body[20:])
    # when
    response = post_events("/v1/batch", data, HTTP_CONTENT_ENCODING="gzip")
    # then
    assert response.status_code == 200
    assert Event.objects.filter(user_id="gz").count() == 2


def test_truncated_gzip_is_a_clear_400(post_events: Any) -> None:
    data = gzip.compress(b'{"userId": "x", "event": "E"}')[:-12]
    response = post_events("/v1/track", data, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 400
    assert "gzip" in response.json()["message"]
    assert not Event.objects.exists()


def test_wrong_method_names_the_allowed_ones(client: Any) -> None:
    response = client.get("/v1/track")
    assert response.status_code == 405
    assert response["Allow"] == "POST, OPTIONS"


# --- Inputs that once cost a whole batch ---------------------------------------------


def _nested(depth: int) -> dict[str, Any]:
    """An object ``depth`` levels deep: {"a": {"a": ... {}}}."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_too_deeply_nested_event_is_rejected_and_the_others_kept(post_events):
    # given an event nested beyond what can be stored, and a good one
    deep = {"type": "track", "userId": "u1", "event": "Deep", "messageId": "deep"}
    deep["properties"] = _nested(300)
    ok = {"type": "track", "userId": "u1", "event": "Fine", "messageId": "ok"}

    # when
    response = post_events("/v1/batch", json.dumps({"batch": [deep, ok]}).encode())

    # then
    assert response.status_code == 200
    assert _json(response)["rejected"] == [
        {
            "index": 0,
            "messageId": "deep",
            "reason": "Event is nested more than 252 levels deep, which cannot be stored.",
        }
    ]
    assert list(Event.objects.values_list("message_id", flat=True)) == ["ok"]
    assert RejectedEvent.objects.get().message_id == "deep"


def test_deepest_storable_event_is_stored(post_events):
    # given events exactly 252 levels deep (their properties, or a key that is not a
    # column and is kept one level further down, in ``extra``), and one deeper
    event = {"type": "track", "userId": "u1", "event": "Deep", "properties": _nested(251)}
    custom = {"type": "track", "userId": "u1", "event": "Deep", "custom": _nested(251)}
    deeper = {"type": "track", "userId": "u1", "event": "Deep", "custom": _nested(252)}

    # when
    response = post_events("/v1/track", event)
    custom_response = post_events("/v1/track", json.dumps(custom).encode())
    deeper_response = post_events("/v1/track", json.dumps(deeper).encode())

    # then
    assert response.content == SUCCESS
    assert custom_response.content == SUCCESS
    assert Event.objects.get(properties__has_key="a").properties == _nested(251)
    assert Event.objects.exclude(properties__has_key="a").get().extra == {"custom": _nested(251)}
    assert _json(deeper_response)["rejected"][0]["reason"] == (
        "Event is nested more than 252 levels deep, which cannot be stored."
    )


def test_batch_integrations_nested_too_deep_reject_their_events(post_events):
    # given integrations at the deepest a batch's may be, and one level deeper
    def body(depth: int, key: str) -> bytes:
        event = {"type": "track", "userId": "u1", "event": "E", "messageId": key}
        return json.dumps({"batch": [event], "integrations": _nested(depth)}).encode()

    # when
    fits = post_events("/v1/batch", body(251, "fits"))
    too_deep = post_events("/v1/batch", body(252, "deep"))

    # then
    assert fits.content == SUCCESS
    assert _json(too_deep)["rejected"][0]["reason"] == (
        "The batch's integrations object is nested more than 251 levels deep, "
        "which cannot be stored."
    )
    assert list(Event.objects.values_list("message_id", flat=True)) == ["fits"]


def test_batch_context_nested_too_deep_rejects_its_events_with_the_reason(post_events):
    # when
    body = {"batch": [{"type": "track", "userId": "u1", "event": "E"}], "context": _nested(300)}
    response = post_events("/v1/batch", json.dumps(body).encode())

    # then
    assert response.status_code == 200
    assert _json(response)["rejected"][0]["reason"] == (
        "The batch's context object is nested more than 251 levels deep, which cannot be stored."
    )
    assert Event.objects.count() == 0
    assert RejectedEvent.objects.count() == 1


def test_batch_context_counts_towards_each_events_size(post_events):
    # given a 20 KB batch context (every event is stored with it)
    context = {"blob": "x" * 20_000}
    small = {"type": "track", "userId": "u1", "event": "Small", "messageId": "small"}
    large = {**_event_of_size(13_000), "messageId": "large"}

    # when
    response = post_events("/v1/batch", {"batch": [small, large], "context": context})

    # then the small event fits with it, the 13 KB one does not
    body = _json(response)
    assert response.status_code == 200
    assert [r["messageId"] for r in body["rejected"]] == ["large"]
    assert "with the batch's context; the limit is 32768 bytes." in body["rejected"][0]["reason"]
    assert Event.objects.get().context["blob"] == context["blob"]


def test_oversized_batch_context_rejects_every_event_without_copying_it(post_events):
    # given a batch context bigger than an event may be
    events = [{"type": "track", "userId": "u1", "event": f"E{i}"} for i in range(20)]

    # when
    response = post_events("/v1/batch", {"batch": events, "context": {"blob": "x" * 40_000}})

    # then
    body = _json(response)
    assert response.status_code == 200
    assert body["accepted"] == 0
    assert len(body["rejected"]) == 20
    assert body["rejected"][0]["reason"].startswith(
        "The batch's context and integrations are 40011 bytes;"
    )
    assert Event.objects.count() == 0


@pytest.mark.parametrize("key", ["userId", "anonymousId", "previousId", "groupId"])
def test_ids_too_large_to_be_exact_are_rejected(post_events, key):
    # given a number past 2**64 (JSON parsers read it as an inexact float)
    event = {"type": "alias", "userId": "u1", "previousId": "p1", "messageId": "m"}
    if key == "groupId":
        event["type"] = "group"
    event[key] = 123456789012345678901
    body = json.dumps({"batch": [event]}).encode()

    # when
    response = post_events("/v1/batch", body)

    # then
    assert _json(response)["rejected"][0]["reason"] == (
        f"{key} is a number too large to be exact; send it as a string."
    )
    assert Event.objects.count() == 0


def test_large_but_exact_numeric_ids_are_kept_as_digits(post_events):
    # when
    response = post_events("/v1/track", b'{"userId": 9007199254740993, "event": "E"}')

    # then (2**53 + 1: a 64-bit integer, exact)
    assert response.content == SUCCESS
    assert Event.objects.get().user_id == "9007199254740993"


def test_ids_are_stored_without_surrounding_blanks(post_events):
    # when
    response = post_events(
        "/v1/identify", {"userId": " 42\t", "anonymousId": " a-1 ", "traits": {"plan": "pro"}}
    )

    # then
    assert response.content == SUCCESS
    event = Event.objects.get()
    assert (event.user_id, event.anonymous_id) == ("42", "a-1")


@pytest.mark.parametrize(
    ("ids", "shown"),
    [
        ({"userId": "undefined"}, "'undefined'"),
        ({"anonymousId": "null"}, "'null'"),
        ({"userId": "0", "anonymousId": "[object Object]"}, "'0' and '[object Object]'"),
        ({"userId": "   "}, None),
        (
            {"anonymousId": "00000000-0000-0000-0000-000000000000"},
            "'00000000-0000-0000-0000-000000000000'",
        ),
    ],
)
def test_events_whose_ids_are_all_placeholders_are_rejected(post_events, ids, shown):
    # when
    response = post_events("/v1/batch", {"batch": [{"type": "page", "name": "Home", **ids}]})

    # then
    reason = _json(response)["rejected"][0]["reason"]
    if shown is None:
        assert reason == "Every event needs a userId or an anonymousId."
    else:
        assert reason == (
            f"The event's ids ({shown}) are placeholder values, not identifiers; "
            "send a real userId or anonymousId."
        )
    assert Event.objects.count() == 0


def test_a_placeholder_user_id_beside_a_real_anonymous_id_is_stored(post_events):
    # when
    response = post_events("/v1/page", {"userId": "undefined", "anonymousId": "a-7"})

    # then
    assert response.content == SUCCESS
    assert Event.objects.get().anonymous_id == "a-7"


def test_lone_surrogate_escapes_become_replacement_characters(post_events):
    # given a page title cut in the middle of an emoji (JSON.stringify writes this)
    body = (
        b'{"batch": [{"type": "page", "anonymousId": "a1", "name": "Sale \\ud83d",'
        b' "properties": {"\\udc00k": "ok \\ud83d\\ude00"}}, '
        b'{"type": "track", "anonymousId": "a1", "event": "Viewed"}]}'
    )

    # when
    response = post_events("/v1/batch", body)

    # then both events are kept; a proper pair stays the emoji it is
    assert response.content == SUCCESS
    page = Event.objects.get(type="page")
    assert page.name == "Sale \ufffd"
    assert page.properties == {"\ufffdk": "ok \U0001f600"}
    assert Event.objects.count() == 2


def test_x_gzip_content_encoding_is_read_as_gzip(post_events):
    # when
    response = post_events(
        "/v1/track", _gzip(orjson.dumps(VALID["track"])), HTTP_CONTENT_ENCODING="x-gzip"
    )

    # then
    assert response.content == SUCCESS
    assert Event.objects.count() == 1


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="a value PostgreSQL refuses and SQLite keeps"
)
def test_event_the_database_refuses_is_rejected_and_the_batch_kept(post_events, monkeypatch):
    # given validation that misses a NUL (as a future gap would), which PostgreSQL
    # refuses in jsonb
    from apps.events import parsing

    monkeypatch.setattr(parsing, "contains_nul", lambda value: False)
    batch = [
        {"type": "identify", "userId": "u1", "messageId": "m-1", "traits": {"a": "1"}},
        {"type": "identify", "userId": "u2", "messageId": "m-2", "traits": {"a": "x\x00y"}},
        {"type": "identify", "userId": "u3", "messageId": "m-3", "traits": {"a": "3"}},
    ]

    # when
    response = post_events("/v1/batch", {"batch": batch})

    # then the two good events are stored and the refused one is reported and kept
    assert response.status_code == 200
    body = _json(response)
    assert body["accepted"] == 2
    assert [(r["index"], r["messageId"]) for r in body["rejected"]] == [(1, "m-2")]
    assert body["rejected"][0]["reason"].startswith("The database refused this event: ")
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["m-1", "m-3"]
    assert RejectedEvent.objects.get().message_id == "m-2"


@given(value=st.text(alphabet="0- nulNULdefinegstUobjcO[]\t", max_size=40))
def test_placeholder_check_agrees_with_the_identity_junk_rules(value):
    from apps.events.parsing import _placeholder
    from apps.identity.normalize import is_junk

    # the fast check at the door says what identity's rules say of a trimmed id
    value = value.strip()
    assert _placeholder(value) is (not value or is_junk(value))

"""What an outside probe broke in ingestion (issue 15): deep nesting, chunked
bodies, implausible client times. Each test failed on the main it was found on."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from django.utils import timezone

from apps.events.models import Event, RejectedEvent
from apps.identity.models import Profile
from tests.events.factories import WEB_WRITE_KEY

pytestmark = pytest.mark.django_db


def _json(response: Any) -> Any:
    return orjson.loads(response.content)


def _lists(depth: int) -> str:
    """A JSON array ``depth`` levels deep, as text: [[[...]]]."""
    return "[" * depth + "]" * depth


def _track(message_id: str, properties: str = "{}") -> str:
    return (
        f'{{"type":"track","userId":"u","event":"e","messageId":"{message_id}",'
        f'"properties":{properties}}}'
    )


# --- 1. Deep nesting --------------------------------------------------------------


@pytest.mark.parametrize("depth", [947, 948, 1030, 5000])
def test_a_deeply_nested_event_is_refused_alone(post_events, depth):
    # given the probe's event (a property nested ``depth`` levels), on its own route
    body = f'{{"userId":"u","event":"e","properties":{{"x":{_lists(depth)}}}}}'

    # when
    response = post_events("/v1/track", body.encode())

    # then: refused with its reason and kept for inspection, never a 500
    assert response.status_code == 200
    assert _json(response)["rejected"][0]["reason"] == (
        "Event is nested more than 252 levels deep, which cannot be stored."
    )
    assert Event.objects.count() == 0
    rejected = RejectedEvent.objects.get()
    assert rejected.reason == RejectedEvent.Reason.INVALID_EVENT
    assert rejected.payload.startswith('{"userId":"u","event":"e","properties":{"x":[[[')


@pytest.mark.parametrize("depth", [948, 1030, 5000])
def test_the_valid_event_beside_a_deeply_nested_one_is_stored(post_events, depth):
    # given one good event and one nested past what orjson (1024) or Python can read
    deep = _track("deep", '{"x":' + _lists(depth) + "}")
    body = f'{{"batch":[{deep},{_track("good")}]}}'

    # when
    response = post_events("/v1/batch", body.encode())

    # then
    assert response.status_code == 200
    assert _json(response)["accepted"] == 1
    assert [r["messageId"] for r in _json(response)["rejected"]] == ["deep"]
    assert list(Event.objects.values_list("message_id", flat=True)) == ["good"]
    assert RejectedEvent.objects.get().message_id == "deep"


def test_deep_nesting_with_a_lone_surrogate_keeps_the_valid_event(post_events):
    # given the surrogate path (the standard parser, which recurses) and a deep event
    good = _track("good", '{"name":"cut \\ud83d emoji"}')
    body = f'{{"batch":[{_track("deep", _lists(3000))},{good}]}}'

    # when
    response = post_events("/v1/batch", body.encode())

    # then
    assert response.status_code == 200
    assert Event.objects.get().properties == {"name": "cut \ufffd emoji"}
    assert RejectedEvent.objects.get().message_id == "deep"


def test_deep_nesting_inside_strings_is_text_not_structure(post_events):
    # given brackets inside a string, beside a body deep enough to be capped
    text = "[" * 2000 + '"{' * 10
    good = _track("good", json.dumps({"text": text}))
    body = f'{{"batch":[{good},{_track("deep", _lists(2000))}]}}'

    # when
    response = post_events("/v1/batch", body.encode())

    # then the string arrives whole
    assert response.status_code == 200
    assert Event.objects.get().properties["text"] == text


def test_a_batch_that_is_not_a_list_and_deeply_nested_is_a_clear_400(post_events):
    # given a body whose "batch" is a deep object instead of an array
    body = f'{{"batch":{{"x":{_lists(2000)}}}}}'

    # when
    response = post_events("/v1/batch", body.encode())

    # then
    assert response.status_code == 400
    assert _json(response)["message"] == "A batch body needs a 'batch' array of events."
    assert RejectedEvent.objects.get().reason == RejectedEvent.Reason.INVALID_BODY


# --- 3. Implausible client times --------------------------------------------------

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> datetime:
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    return NOW


def _event(message_id: str, **times: str) -> dict[str, Any]:
    return {"type": "track", "userId": "u1", "event": "E", "messageId": message_id, **times}


@pytest.mark.parametrize(
    "sent",
    [
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "1970-01-01T00:00:00Z",
        "1999-12-31T23:59:59Z",
        "2026-05-02T12:00:01Z",  # a day and a second ahead of the server
    ],
)
@pytest.mark.parametrize("route", ["/v1/track", "/v1/batch"])
def test_an_implausible_event_time_becomes_the_receive_time(post_events, frozen_now, sent, route):
    # given an event whose client clock is wrong, and no sentAt to correct it by
    event = _event("m", timestamp=sent)
    body = event if route == "/v1/track" else {"batch": [event]}

    # when
    response = post_events(route, body)

    # then: timed on arrival, what was sent kept, and counted as corrected
    assert response.content == b'{"success":true}'
    stored = Event.objects.get()
    assert stored.timestamp == NOW
    assert stored.original_timestamp == datetime.fromisoformat(sent)
    assert stored.timestamp_corrected is True


@pytest.mark.parametrize(
    "sent", ["2000-01-01T00:00:00Z", "2026-05-02T12:00:00Z", "2026-05-01T11:59:00Z"]
)
def test_plausible_event_times_are_kept(post_events, frozen_now, sent):
    # when: the window's edges, and a minute ago
    post_events("/v1/track", _event("m", timestamp=sent))

    # then
    stored = Event.objects.get()
    assert stored.timestamp == datetime.fromisoformat(sent)
    assert stored.timestamp_corrected is False


def test_a_profile_is_not_first_seen_in_year_one(post_events, frozen_now):
    # given the probe's two events: one dated 0001-01-01, one 9999-12-31
    post_events("/v1/track", _event("old", timestamp="0001-01-01T00:00:00Z"))
    post_events("/v1/track", _event("new", timestamp="9999-12-31T23:59:59Z"))

    # then the profile's times are the server's, not the broken clock's
    profile = Profile.objects.get()
    assert profile.first_seen == NOW
    assert profile.last_seen == NOW


def test_an_implausible_batch_sent_at_does_not_move_the_events(post_events, frozen_now):
    # given the probe's batch: sentAt 0001-01-01, an event of a minute ago
    event = _event("m", originalTimestamp="2026-05-01T11:59:00Z")

    # when
    post_events("/v1/batch", {"batch": [event], "sentAt": "0001-01-01T00:00:00Z"})

    # then: not "corrected" to 4052; the event's own time is kept, sentAt as sent
    stored = Event.objects.get()
    assert stored.timestamp == datetime(2026, 5, 1, 11, 59, tzinfo=UTC)
    assert stored.sent_at == datetime(1, 1, 1, tzinfo=UTC)
    assert stored.timestamp_corrected is True


def test_a_skew_correction_into_implausible_times_becomes_the_receive_time(post_events, frozen_now):
    # given a plausible sentAt and an event time far before it
    event = _event("m", timestamp="0001-01-01T00:00:00Z", sentAt="2026-05-01T11:00:00Z")

    # when
    post_events("/v1/track", event)

    # then
    stored = Event.objects.get()
    assert stored.timestamp == NOW
    assert stored.timestamp_corrected is True


def test_skew_correction_far_apart_times_are_corrected_not_refused(post_events, frozen_now):
    # given times that used to overflow the skew correction and cost the event
    event = _event("m", timestamp="0001-01-01T00:00:00Z", sentAt="9999-01-01T00:00:00Z")

    # when
    response = post_events("/v1/track", event)

    # then
    assert response.content == b'{"success":true}'
    assert Event.objects.get().timestamp == NOW


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("1995-06-01T10:00:00Z", True), ("1989-12-31T23:59:59Z", False)],
)
def test_import_takes_history_back_to_its_own_year(post_events, frozen_now, sent, kept):
    # when
    post_events("/v1/import", {"batch": [_event("m", timestamp=sent)]})

    # then
    stored = Event.objects.get()
    assert stored.timestamp == (datetime.fromisoformat(sent) if kept else NOW)
    assert stored.timestamp_corrected is (not kept)


def test_the_window_is_configurable(post_events, frozen_now, settings):
    # given an install that takes live events back to 1995 and an hour ahead
    settings.CDP = {
        **settings.CDP,
        "EARLIEST_EVENT_YEAR": 1995,
        "MAX_FUTURE_EVENT_SECONDS": 3600,
    }

    # when
    post_events("/v1/track", _event("old", timestamp="1996-01-01T00:00:00Z"))
    post_events("/v1/track", _event("ahead", timestamp="2026-05-01T13:30:00Z"))

    # then
    assert Event.objects.get(message_id="old").timestamp_corrected is False
    assert Event.objects.get(message_id="ahead").timestamp == NOW


def test_admin_counts_corrected_times_per_source(post_events, frozen_now, admin_client, source):
    # given one corrected event and one plausible one
    post_events("/v1/track", _event("bad", timestamp="9999-12-31T23:59:59Z"))
    post_events("/v1/track", _event("good", timestamp="2026-05-01T11:00:00Z"))

    # when
    sources = admin_client.get("/admin/events/source/")
    corrected = admin_client.get(
        f"/admin/events/event/?source__id__exact={source.pk}&timestamp_corrected__exact=1"
    )

    # then
    assert sources.status_code == 200
    link = f"/admin/events/event/?source__id__exact={source.pk}&amp;timestamp_corrected__exact=1"
    assert f'<a href="{link}">1</a>' in sources.content.decode()
    assert corrected.status_code == 200
    assert [e.message_id for e in corrected.context["cl"].result_list] == ["bad"]


# --- 2. Chunked bodies ----------------------------------------------------------


def _post_chunked(url: str, path: str, chunks: list[bytes], key: str, **headers: str) -> Any:
    """POST with Transfer-Encoding: chunked and no Content-Length, as streaming
    clients (and some proxies) send."""
    parsed = urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    auth = base64.b64encode(f"{key}:".encode()).decode()
    try:
        conn.request(
            "POST",
            path,
            body=iter(chunks),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Basic {auth}",
                "Transfer-Encoding": "chunked",
                **headers,
            },
            encode_chunked=True,
        )
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("compressed", [False, True])
def test_a_chunked_batch_is_read_whole(gunicorn_url, source, compressed):
    # given a batch of 50 events sent in 1 KB chunks, plain or gzip
    batch = [_event(f"m{i}", timestamp="2024-01-01T00:00:00Z") for i in range(50)]
    body = orjson.dumps({"batch": batch})
    headers = {"Content-Encoding": "gzip"} if compressed else {}
    if compressed:
        body = gzip.compress(body)

    # when
    status, answer = _post_chunked(
        gunicorn_url, "/v1/batch", _split(body, 1024), WEB_WRITE_KEY, **headers
    )

    # then
    assert (status, answer) == (200, b'{"success":true}')
    assert Event.objects.filter(source=source).count() == 50


def test_a_chunked_body_over_the_limit_is_413(gunicorn_url, source, settings):
    # given a chunked body past the 4 MB limit, with no Content-Length to tell
    filler = "x" * 1000
    batch = [_event(f"m{i}") | {"properties": {"f": filler}} for i in range(4500)]
    body = orjson.dumps({"batch": batch})
    assert len(body) > settings.CDP["MAX_REQUEST_BYTES"]

    # when
    status, answer = _post_chunked(gunicorn_url, "/v1/batch", _split(body, 65536), WEB_WRITE_KEY)

    # then
    assert status == 413
    assert orjson.loads(answer)["code"] == "too_large"
    assert Event.objects.count() == 0


def test_a_chunked_body_the_server_cannot_read_is_411_not_an_empty_body(client, source):
    # given Django's own server (its input ends at Content-Length, so at 0 here)
    auth = base64.b64encode(f"{WEB_WRITE_KEY}:".encode()).decode()

    # when
    response = client.post(
        "/v1/track",
        data=b"",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Basic {auth}",
        HTTP_TRANSFER_ENCODING="chunked",
    )

    # then
    assert response.status_code == 411
    assert _json(response)["code"] == "length_required"


# --- Numbers past a double's range ------------------------------------------------


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1" * 400, "9" * 5000])
def test_a_number_past_a_doubles_range_is_refused_with_its_event(post_events, number):
    # given valid JSON that orjson refuses whole, beside a valid event
    big = _track("big", '{"n":' + number + "}")
    body = f'{{"batch":[{big},{_track("good")}]}}'

    # when
    response = post_events("/v1/batch", body.encode())

    # then
    assert response.status_code == 200
    assert _json(response)["rejected"] == [
        {
            "index": 0,
            "messageId": "big",
            "reason": "Event holds a number beyond the range of a double (about 1.8e308); "
            "send it as a string.",
        }
    ]
    assert list(Event.objects.values_list("message_id", flat=True)) == ["good"]


def test_numbers_orjson_reads_are_read_the_same_on_the_fallback_path(post_events):
    # given a body that takes the standard parser (a lone surrogate), with large
    # integers and floats that orjson itself reads
    props = '{"s":"\\ud83d","big":18446744073709551616,"neg":-9223372036854775809,"f":1.5e300}'
    body = f'{{"batch":[{_track("m", props)}]}}'

    # when
    post_events("/v1/batch", body.encode())

    # then: as orjson reads them (a double past 64 bits); PostgreSQL's jsonb gives
    # numbers back in its own notation, so they are compared as numbers
    properties = Event.objects.get().properties
    assert properties["s"] == "\ufffd"
    assert {k: float(properties[k]) for k in ("big", "neg", "f")} == {
        "big": 1.8446744073709552e19,
        "neg": -9.223372036854776e18,
        "f": 1.5e300,
    }


@pytest.mark.parametrize("body", ['{"batch":[NaN]}', '{"batch":[Infinity]}', '{"batch":[1,]}'])
def test_what_is_not_json_stays_a_400(post_events, body):
    # when
    response = post_events("/v1/batch", body.encode())

    # then
    assert response.status_code == 400
    assert _json(response)["code"] == "invalid_json"


# --- Found by tests/events/test_ingest_fuzz.py ------------------------------------


@pytest.mark.parametrize("kind", ['["track"]', '{"a":1}', "1", "null"])
def test_a_type_that_is_not_a_string_is_refused_alone(post_events, kind):
    # given an event whose type is a list or an object (once a 500: unhashable)
    odd = f'{{"type":{kind},"userId":"u","messageId":"odd"}}'
    body = f'{{"batch":[{odd},{_track("good")}]}}'

    # when
    response = post_events("/v1/batch", body.encode())

    # then
    assert response.status_code == 200
    assert _json(response)["rejected"][0]["reason"].startswith("type must be one of alias,")
    assert list(Event.objects.values_list("message_id", flat=True)) == ["good"]


def test_a_deep_body_with_unterminated_strings_is_refused_in_linear_time(post_events):
    # given a body past the parsers' depth whose strings never close (once a
    # quadratic scan: 40 KB took 14 s)
    body = b'{"batch":' + b"[" * 1100 + b'"' + b'\\"' * 400_000

    # when
    started = time.monotonic()
    response = post_events("/v1/batch", body)

    # then a clear 400, at once
    assert response.status_code == 400
    assert _json(response)["code"] == "invalid_json"
    assert time.monotonic() - started < 5

"""Property-based ingestion (issue 15): whatever a client puts in an event's fields,
the valid event posted beside it in the same batch is stored exactly once, and the
answer is a 2xx, never a 5xx.

The hostile events are written as JSON *text*, so that they can hold what no
Python value serializes to: lone surrogate escapes, numbers past a double's range,
nesting past the parsers' limits. They go plain and gzip with a Content-Length
(Django's test client), and chunked through a real gunicorn.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import uuid
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.events.models import Event
from tests.events.factories import WEB_WRITE_KEY

pytestmark = pytest.mark.django_db

# The fields clients send, the columns' and others, and keys nobody should send.
FIELDS = [
    "type",
    "userId",
    "anonymousId",
    "event",
    "name",
    "messageId",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "receivedAt",
    "properties",
    "traits",
    "context",
    "integrations",
    "previousId",
    "groupId",
    "writeKey",
    "channel",
]
ODD_KEYS = st.one_of(
    st.sampled_from(["", " ", "__proto__", "$set", "\x00", "\ud800", "a\x00b", "k" * 300]),
    st.text(max_size=8),
)


def _string(value: str) -> str:
    # ensure_ascii writes a lone surrogate as the escape "\ud800", as browsers do.
    return json.dumps(value)


SCALARS = st.one_of(
    st.sampled_from(["null", "true", "false", "0", "-0", "1E+2", "0.1e-400"]),
    st.sampled_from(["1e400", "-1e400", "1" * 400, "-" + "9" * 30, "18446744073709551616"]),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(json.dumps),
    st.text(max_size=20).map(_string),
    st.text(st.characters(codec=None, categories=["Cs", "Cc"]), max_size=4).map(_string),
    st.sampled_from(['"\\u0000"', '"\\ud83d"', '"\\udfff\\ud800"', '"2024-01-01T00:00:00Z"']),
    st.sampled_from(['"9999-12-31T23:59:59Z"', '"0001-01-01T00:00:00+14:00"', '"not a date"']),
)


def _array(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def _object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{_string(k)}:{v}" for k, v in pairs) + "}"


DEEP = st.integers(min_value=1, max_value=3000).flatmap(
    lambda depth: st.sampled_from(["[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth])
)
VALUES = st.recursive(
    st.one_of(SCALARS, DEEP),
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(_array),
        st.lists(st.tuples(ODD_KEYS, children), max_size=4).map(_object),
    ),
    max_leaves=12,
)
# Some hostile events start from a valid one, so that odd values also reach the
# stored and processed path, not only the refusals.
BASES = st.sampled_from(
    [
        [],
        [("type", '"track"'), ("userId", '"fuzz"'), ("event", '"E"')],
        [("type", '"identify"'), ("anonymousId", '"anon-fuzz"')],
        [("type", '"alias"'), ("userId", '"fuzz"'), ("previousId", '"anon-fuzz"')],
    ]
)
HOSTILE_EVENTS = st.one_of(
    st.tuples(
        BASES, st.lists(st.tuples(st.sampled_from(FIELDS) | ODD_KEYS, VALUES), max_size=6)
    ).map(lambda parts: _object(parts[0] + parts[1])),
    VALUES,  # not even an object
)


def _valid_event() -> tuple[str, str]:
    # Ids nothing generated can hit: no hostile event shares its person or message.
    message_id = f"valid-{uuid.uuid4()}"
    event = {
        "type": "track",
        "userId": f"valid-user-{uuid.uuid4()}",
        "event": "Valid",
        "messageId": message_id,
        "properties": {"i": 1},
    }
    return message_id, orjson.dumps(event).decode()


@st.composite
def batches(draw: Any) -> tuple[str, bytes, int]:
    """(the valid event's messageId, a batch body, how many events it holds)."""
    hostile = draw(st.lists(HOSTILE_EVENTS, min_size=1, max_size=3))
    message_id, valid = _valid_event()
    position = draw(st.integers(min_value=0, max_value=len(hostile)))
    events = [*hostile[:position], valid, *hostile[position:]]
    return message_id, ('{"batch":' + _array(events) + "}").encode(), len(events)


def _check(status: int, content: bytes, message_id: str, count: int) -> None:
    assert status == 200, content[:500]
    answer = orjson.loads(content)
    assert answer["success"] is True
    if "rejected" in answer:
        assert answer["accepted"] + len(answer["rejected"]) == count
        assert message_id not in [r["messageId"] for r in answer["rejected"]]
        assert all(isinstance(r["reason"], str) and r["reason"] for r in answer["rejected"])
    stored = Event.objects.filter(message_id=message_id)
    assert stored.count() == 1
    assert stored.get().properties == {"i": 1}


_FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_FUZZ
@given(batch=batches(), compressed=st.booleans())
def test_the_valid_event_beside_anything_is_stored_exactly_once(post_events, batch, compressed):
    # given a batch of hostile events around one valid event
    message_id, body, count = batch
    headers = {"HTTP_CONTENT_ENCODING": "gzip"} if compressed else {}
    data = gzip.compress(body) if compressed else body

    # when it is posted, and posted again as an SDK retries
    first = post_events("/v1/batch", data, **headers)
    again = post_events("/v1/batch", data, **headers)

    # then
    _check(first.status_code, first.content, message_id, count)
    _check(again.status_code, again.content, message_id, count)


def _post_chunked(url: str, body: bytes, key: str, compressed: bool) -> tuple[int, bytes]:
    parsed = urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    headers = {
        "Content-Type": "application/json",
        "Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode(),
        "Transfer-Encoding": "chunked",
    }
    if compressed:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    chunks = [body[i : i + 777] for i in range(0, len(body), 777)]
    try:
        conn.request("POST", "/v1/batch", body=iter(chunks), headers=headers, encode_chunked=True)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@settings(_FUZZ, max_examples=40)
@given(batch=batches(), compressed=st.booleans())
def test_the_valid_event_sent_chunked_beside_anything_is_stored_exactly_once(
    gunicorn_url, source, batch, compressed
):
    # given
    message_id, body, count = batch

    # when: chunked, through a real server
    status, content = _post_chunked(gunicorn_url, body, WEB_WRITE_KEY, compressed)

    # then
    _check(status, content, message_id, count)


ROUTES = ["/v1/track", "/v1/identify", "/v1/page", "/v1/alias", "/v1/group", "/v1/import"]


@_FUZZ
@given(route=st.sampled_from(ROUTES), body=HOSTILE_EVENTS)
def test_a_hostile_body_on_any_route_is_answered_never_with_a_5xx(post_events, route, body):
    # when a hostile event is the whole body
    response = post_events(route, body.encode())

    # then: accepted, or refused with a documented 400 that says why
    assert response.status_code in (200, 400), response.content[:500]
    answer = orjson.loads(response.content)
    if response.status_code == 400:
        assert answer["code"] in ("invalid_json", "invalid_body")
        assert answer["message"]


@_FUZZ
@given(
    envelope=st.lists(
        st.tuples(st.sampled_from(["sentAt", "context", "integrations", "writeKey"]), VALUES),
        min_size=1,
        max_size=3,
    )
)
def test_a_hostile_batch_envelope_is_answered_never_with_a_5xx(post_events, envelope):
    # given a valid event in a batch whose own fields are anything
    message_id, valid = _valid_event()
    body = _object(envelope).removesuffix("}") + f',"batch":[{valid}]}}'
    if not envelope:
        body = f'{{"batch":[{valid}]}}'

    # when
    response = post_events("/v1/batch", body.encode())

    # then the event is stored, or refused with the envelope's reason
    assert response.status_code == 200, response.content[:500]
    answer = orjson.loads(response.content)
    stored = Event.objects.filter(message_id=message_id).count()
    assert stored + len(answer.get("rejected", [])) == 1

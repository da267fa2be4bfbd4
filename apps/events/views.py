"""The Segment HTTP tracking API (as RudderStack also serves it).

Plain Django views rather than DRF: this is the hot path, and its contract is
Segment's, not ours. Every request that parsed is answered ``200 {"success": true}``
(with counts and reasons when some events were rejected), because the SDKs treat
any other 2xx as a failure and resend, and drop a whole batch on 400.
"""

from __future__ import annotations

import json
import logging
import math
import re
import zlib
from typing import Any

import orjson
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from .auth import basic_auth_username, source_for_key
from .models import RejectedEvent
from .parsing import (
    MAX_NESTING,
    BatchDefaults,
    EventError,
    OutOfRangeNumber,
    envelope_check,
    parse_timestamp,
    time_window,
)
from .services import event_ingest, rejected_event_record

logger = logging.getLogger(__name__)

SINGLE_TYPES = {
    "identify": "identify",
    "i": "identify",
    "track": "track",
    "t": "track",
    "page": "page",
    "p": "page",
    "screen": "screen",
    "s": "screen",
    "group": "group",
    "g": "group",
    "alias": "alias",
    "a": "alias",
}
BATCH_KINDS = {"batch", "b", "import"}
_SUCCESS = orjson.dumps({"success": True})
_SURROGATE = re.compile("[\ud800-\udfff]")


def _json_response(body: dict[str, Any] | bytes, status: int = 200) -> HttpResponse:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return HttpResponse(content, status=status, content_type="application/json")


def _error(status: int, code: str, message: str) -> HttpResponse:
    # Segment's SDKs read "code" and "message"; "detail" matches our own API.
    response = _json_response(
        {"success": False, "code": code, "message": message, "detail": message}, status
    )
    if status == 503:
        response["Retry-After"] = "5"
    return response


class _TooLarge(Exception):
    pass


class _LengthRequired(Exception):
    pass


def _body_stream(request: HttpRequest) -> Any:
    """Where to read the body from.

    Django reads a WSGI body only up to its Content-Length, so a chunked upload
    (no Content-Length) would read as empty and its events be lost. gunicorn
    de-chunks ``wsgi.input`` and ends it at the body's end (``wsgi.input_terminated``):
    read that. Under ASGI Django holds the whole body already. A server that
    offers neither (Django's development server) cannot hand over a chunked body:
    411 says so rather than an empty read.
    """
    if "chunked" not in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        return request
    if "wsgi.input" not in request.META:  # ASGI
        return request
    if request.META.get("wsgi.input_terminated"):
        return request.META["wsgi.input"]
    raise _LengthRequired


def _read_body(request: HttpRequest, limit: int) -> bytes:
    declared = request.META.get("CONTENT_LENGTH")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    stream = _body_stream(request)
    body = _read_at_most(stream, limit + 1)
    if len(body) > limit:
        raise _TooLarge
    encoding = request.META.get("HTTP_CONTENT_ENCODING", "").strip().lower()
    if encoding in ("gzip", "x-gzip") or (encoding == "" and body[:2] == b"\x1f\x8b"):
        body = _gunzip(body, limit)
    elif encoding not in ("", "identity"):
        raise ValueError(f"Unsupported Content-Encoding {encoding!r}; send gzip or plain JSON.")
    return body


def _read_at_most(stream: Any, size: int) -> bytes:
    # A raw server stream may return fewer bytes than asked before its end.
    parts: list[bytes] = []
    while size > 0:
        part = stream.read(size)
        if not part:
            break
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _gunzip(data: bytes, limit: int) -> bytes:
    """Decompress every gzip member, never past ``limit`` bytes (a small gzip
    bomb must not expand in memory)."""
    out = bytearray()
    while data:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += decompressor.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise ValueError("The body says it is gzip but could not be decompressed.") from exc
        if len(out) > limit or decompressor.unconsumed_tail:
            raise _TooLarge
        if not decompressor.eof:
            raise ValueError("The gzip body is truncated.")
        data = decompressor.unused_data
    return bytes(out)


def _loads(raw: bytes, *, capped: bool = False) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in exc.msg and not capped:
            return _loads(_depth_capped(raw), capped=True)
        refused = exc
    # JSON that orjson refuses although it is valid, each of which once cost the
    # whole batch: a lone UTF-16 surrogate escape ("\ud83d" of a cut emoji, which
    # JSON.stringify and Python's json write) and a number past a double's range
    # (1e400). The standard parser reads both: a surrogate becomes U+FFFD, such a
    # number an OutOfRangeNumber, whose event is refused alone. Whatever it also
    # refuses gets orjson's message, the more precise one.
    try:
        return _replace_surrogates(
            json.loads(raw, parse_float=_float, parse_int=_int, parse_constant=_no_constant)
        )
    except RecursionError:
        if not capped:
            return _loads(_depth_capped(raw), capped=True)
        raise refused from None
    except ValueError:
        raise refused from None


def _float(text: str) -> float:
    number = float(text)
    return OutOfRangeNumber(text) if math.isinf(number) else number


def _int(text: str) -> int | float:
    # As orjson reads integers: exact within 64 bits, else a double (or out of
    # range). Converting a 5000-digit string to int would raise past Python's limit.
    if len(text) <= 20:
        value = int(text)
        if -(2**63) <= value < 2**64:
            return value
    return _float(text)


def _no_constant(text: str) -> None:
    raise ValueError(f"{text} is not JSON")


# Deeper than any event can be stored (an event sits two levels down in a batch and
# may nest MAX_NESTING levels), and shallow enough for the parsers and for Python's
# own recursion (the surrogate path, a refused event's copy).
_BODY_DEPTH_CAP = MAX_NESTING + 48
# A string (escapes included) or a bracket: what decides how deep a JSON text is.
# The closing quote is optional: an unterminated string is then taken once, to the
# end, rather than tried again from each quote in it (quadratic time on a hostile
# body); such a body is invalid JSON and refused by the parser after the cap.
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.S)


def _depth_capped(raw: bytes) -> bytes:
    """The body with every value nested deeper than ``_BODY_DEPTH_CAP`` replaced
    by ``null``.

    The parsers refuse a body nested past their limit (orjson: 1024 levels) whole,
    and the valid events beside the deep one with it. Capped, the body parses; the
    deep event is still nested past what can be stored, so it is refused on its
    own and the others are kept. Only bodies the parser refused come here: a
    pass in Python over the brackets, bounded by the request size limit.
    """
    out: list[bytes] = []
    depth = 0
    kept_until = 0
    cut_at = -1
    for match in _JSON_TOKEN.finditer(raw):
        char = raw[match.start()]
        if char == 0x22:  # a string: its brackets are text
            continue
        if char in b"[{":
            depth += 1
            if depth == _BODY_DEPTH_CAP + 1:
                cut_at = match.start()
        else:
            if depth == _BODY_DEPTH_CAP + 1 and cut_at >= 0:
                out += (raw[kept_until:cut_at], b"null")
                kept_until = match.end()
                cut_at = -1
            depth -= 1
    out.append(raw[kept_until:])
    return b"".join(out)


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    return value


def _client_ip(request: HttpRequest) -> str | None:
    if settings.CDP.get("TRUST_X_FORWARDED_FOR"):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[0].strip() or None
    return request.META.get("REMOTE_ADDR") or None


@csrf_exempt
def ingest(request: HttpRequest, kind: str) -> HttpResponse:
    if request.method != "POST":
        response = _error(405, "method_not_allowed", "Send events with POST.")
        response["Allow"] = "POST, OPTIONS"
        return response
    received_at = timezone.now()
    path = request.path
    limit = settings.CDP["MAX_REQUEST_BYTES"]

    key = basic_auth_username(request)
    body_error: str | None = None
    too_large = False
    data: Any = None
    raw = b""
    try:
        raw = _read_body(request, limit)
        data = _loads(raw) if raw else None
        if data is None:
            body_error = "The request body is empty; send a JSON object."
    except _TooLarge:
        too_large = True
    except _LengthRequired:
        return _error(
            411,
            "length_required",
            "This server cannot read a chunked body (Transfer-Encoding: chunked); send "
            "Content-Length, or run the server under gunicorn, which reads chunked bodies.",
        )
    except orjson.JSONDecodeError as exc:
        body_error = f"The request body is not valid JSON ({exc.msg} at position {exc.pos})."
    except ValueError as exc:
        body_error = str(exc)
    if key is None and isinstance(data, dict) and isinstance(data.get("writeKey"), str):
        key = data["writeKey"]
    if key is None:
        key = request.GET.get("writeKey") or None
    if too_large and not key:
        # The key may be in the body we refused to read: the size is the answer.
        return _error(413, "too_large", f"The request body is over {limit} bytes.")
    if not key:
        return _error(
            401,
            "missing_write_key",
            "No write key: send it as the HTTP Basic username, or as writeKey in the "
            "body or the query string.",
        )
    try:
        source = source_for_key(key)
        if source is None:
            return _error(401, "invalid_write_key", "Unknown or disabled write key.")
        if too_large:
            rejected_event_record(
                source=source,
                reason=RejectedEvent.Reason.TOO_LARGE,
                message=f"Request body over {limit} bytes.",
                path=path,
                received_at=received_at,
            )
            return _error(413, "too_large", f"The request body is over {limit} bytes.")
        if body_error is None and not isinstance(data, dict):
            body_error = "The request body must be a JSON object."
        if body_error is not None:
            rejected_event_record(
                source=source,
                reason=RejectedEvent.Reason.INVALID_JSON,
                message=body_error,
                raw=raw,
                path=path,
                received_at=received_at,
            )
            return _error(400, "invalid_json", body_error)
        return _ingest_parsed(request, kind, source, data, received_at)
    except DatabaseError:
        logger.exception("database unavailable during ingestion")
        return _error(503, "unavailable", "Storage is unavailable; retry later.")


def _ingest_parsed(
    request: HttpRequest, kind: str, source: Any, data: dict[str, Any], received_at: Any
) -> HttpResponse:
    path = request.path
    is_batch = kind in BATCH_KINDS
    if is_batch:
        events = data.get("batch")
        if not isinstance(events, list):
            message = "A batch body needs a 'batch' array of events."
            rejected_event_record(
                source=source,
                reason=RejectedEvent.Reason.INVALID_BODY,
                message=message,
                payload=data,
                path=path,
                received_at=received_at,
            )
            return _error(400, "invalid_body", message)
        sent_at_raw = data.get("sentAt")
        context = data.get("context") if isinstance(data.get("context"), dict) else None
        integrations = (
            data.get("integrations") if isinstance(data.get("integrations"), dict) else None
        )
    else:
        events = [data]
        sent_at_raw = None
        context = integrations = None
    try:
        sent_at = parse_timestamp(sent_at_raw, "sentAt")
    except EventError as exc:
        # The envelope's time is wrong: every event would be skewed by it.
        sent_at = None
        events = [
            {**e, "sentAt": sent_at_raw} if isinstance(e, dict) and "sentAt" not in e else e
            for e in events
        ]
        logger.info("batch with invalid sentAt: %s", exc)
    envelope_bytes, envelope_error = envelope_check(
        context, integrations, settings.CDP["MAX_EVENT_BYTES"]
    )
    earliest, latest = time_window(
        received_at,
        historical=kind == "import",
        earliest_year=settings.CDP["EARLIEST_EVENT_YEAR"],
        import_earliest_year=settings.CDP["IMPORT_EARLIEST_EVENT_YEAR"],
        future_seconds=settings.CDP["MAX_FUTURE_EVENT_SECONDS"],
    )
    defaults = BatchDefaults(
        received_at=received_at,
        earliest=earliest,
        latest=latest,
        envelope_bytes=envelope_bytes,
        envelope_error=envelope_error,
        sent_at=sent_at,
        context=context,
        integrations=integrations,
        ip=_client_ip(request),
        historical=kind == "import",
        gpc=request.headers.get("Sec-GPC", "").strip() == "1",
        user_agent=request.headers.get("User-Agent", "")[:500],
    )
    result = event_ingest(
        source=source,
        events=events,
        defaults=defaults,
        forced_type=None if is_batch else SINGLE_TYPES[kind],
        path=path,
    )
    if not result.rejected:
        return _json_response(_SUCCESS)
    return _json_response(
        {
            "success": True,
            "accepted": result.accepted,
            "rejected": [
                {"index": r.index, "messageId": r.message_id, "reason": r.message}
                for r in result.rejected
            ],
        }
    )


@csrf_exempt
def metrics(request: HttpRequest) -> HttpResponse:
    """analytics.js posts its own telemetry to /v1/m; accepted and discarded."""
    return _json_response(_SUCCESS)

"""Turning Segment-spec JSON into event rows, one event at a time.

Each event is validated on its own so that one bad event never costs a batch its
good ones. ``parse_event`` returns either a row (a dict of Event columns) or the
reason it was refused, in words a developer can act on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from apps.common.validators import contains_nul
from apps.identity.normalize import JUNK_VALUES, is_junk

from .models import EventType

EVENT_TYPES = frozenset(EventType.values)
# Keys that become columns; every other top-level key is kept in ``extra``.
_COLUMN_KEYS = frozenset(
    {
        "type",
        "userId",
        "anonymousId",
        "event",
        "name",
        "previousId",
        "groupId",
        "timestamp",
        "originalTimestamp",
        "sentAt",
        "receivedAt",
        "messageId",
        "properties",
        "traits",
        "context",
        "writeKey",
    }
)
MAX_ID_LENGTH = 255
# Integers beyond this arrive as floats (JSON parsers keep 64 bits at most) and
# are no longer exact: two different ids could become one.
_MAX_EXACT_FLOAT = 2**53
_LONGEST_PLACEHOLDER = max(len(v) for v in JUNK_VALUES)


# How deep an event's objects and arrays may nest: orjson writes 254 levels, and
# an event's own keys sit two levels down when stored (a row in the batch's
# array; keys that are not columns inside the row's ``extra``).
MAX_NESTING = 252


class EventError(ValueError):
    pass


class OutOfRangeNumber(float):
    """A JSON number beyond what a double holds (``1e400``, a 400-digit integer).

    JSON allows any number; orjson refuses the whole body for one, and PostgreSQL's
    jsonb stores none past 1e308 that a client could read back. So the body is
    read with these marked (apps/events/views.py), and the event that holds one is
    refused on its own, by name: orjson will not write this type.
    """

    text: str

    def __new__(cls, text: str) -> OutOfRangeNumber:
        number = super().__new__(cls, float(text))
        number.text = text
        return number


def _unstorable(exc: orjson.JSONEncodeError) -> str:
    """Why orjson would not write a parsed value: a number out of range (the only
    type the body parser makes that it refuses), or nesting past its limit."""
    if "not JSON serializable" in str(exc):
        return "a number beyond the range of a double (about 1.8e308); send it as a string"
    return "nesting"


@dataclass(frozen=True, slots=True)
class BatchDefaults:
    """What a batch envelope (or the request) adds to each of its events."""

    received_at: datetime
    sent_at: datetime | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    ip: str | None = None
    historical: bool = False  # /v1/import: keep the client's times as they are
    # Serialized size of the envelope's context and integrations, which every
    # event of the batch is stored with, and why they cannot be stored, if so.
    envelope_bytes: int = 0
    envelope_error: str | None = None
    gpc: bool = False  # the request carried Sec-GPC: 1 (opt-out of sale/sharing)
    user_agent: str = ""
    # The plausible window of client times (``time_window``); None: no bounds.
    earliest: datetime | None = None
    latest: datetime | None = None


def time_window(
    received_at: datetime,
    *,
    historical: bool,
    earliest_year: int,
    import_earliest_year: int,
    future_seconds: int,
) -> tuple[datetime, datetime]:
    """The client times taken as they are sent: from the start of a year (2000 on
    live routes, an earlier configurable one on /v1/import, which carries history)
    to a day past the server's clock, by default.

    Outside it a clock is wrong (a device reset to 0001-01-01 or 1970, a typo of
    9999): Segment's rule is to time such an event on arrival and keep what was
    sent, so that one wrong clock cannot put a person's first visit in year 1 or
    hold the top of their timeline until 9999.
    """
    year = import_earliest_year if historical else earliest_year
    return (
        datetime(year, 1, 1, tzinfo=UTC),
        received_at + timedelta(seconds=future_seconds),
    )


def envelope_check(context: Any, integrations: Any, max_bytes: int) -> tuple[int, str | None]:
    """What a batch's own context and integrations add to each of its events:
    (bytes, None), or (0, why they cannot be stored)."""
    size = 0
    for key, value in (("context", context), ("integrations", integrations)):
        if value is None:
            continue
        try:
            # As deep as stored: integrations go in the row's ``extra``.
            size += len(orjson.dumps([[[value]]])) - 6
        except orjson.JSONEncodeError as exc:
            why = _unstorable(exc)
            if why != "nesting":
                return 0, f"The batch's {key} object holds {why}."
            return 0, (
                f"The batch's {key} object is nested more than {MAX_NESTING - 1} levels deep, "
                "which cannot be stored."
            )
    if size > max_bytes:
        return 0, (
            f"The batch's context and integrations are {size} bytes; every event is "
            f"stored with them, and the limit is {max_bytes} bytes an event."
        )
    return size, None


def parse_timestamp(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(f"{field} must be an ISO-8601 date string, got {type(value).__name__}.")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise EventError(f"{field} is not a valid ISO-8601 date: {value[:40]!r}.") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        # In UTC now: "0001-01-01T00:00:00+14:00" has no UTC form and would fail at
        # insert time, failing the whole request.
        return parsed.astimezone(UTC)
    except OverflowError:
        raise EventError(f"{field} is out of range: {value[:40]!r}.") from None


def _identifier(event: dict[str, Any], key: str) -> str:
    value = event.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise EventError(f"{key} must be a string or a number.")
    if isinstance(value, float):
        if abs(value) >= _MAX_EXACT_FLOAT:
            raise EventError(f"{key} is a number too large to be exact; send it as a string.")
        text = str(int(value)) if value.is_integer() else str(value)
    else:
        # Surrounding blanks are never part of an id; " 42" and "42" are one user.
        text = value.strip() if isinstance(value, str) else str(value)
    if len(text) > MAX_ID_LENGTH:
        raise EventError(f"{key} is longer than {MAX_ID_LENGTH} characters.")
    return text


def _placeholder(value: str) -> bool:
    """No id, or one of the placeholders clients send for an unset variable."""
    if not value:
        return True
    if len(value) > _LONGEST_PLACEHOLDER:
        # Most ids are long (UUIDs): only a run of zeros and dashes is a
        # placeholder then (the nil UUID), which needs no regular expression.
        return not value.strip().strip("0-")
    return is_junk(value)


def _object(event: dict[str, Any], key: str) -> dict[str, Any]:
    value = event.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventError(f"{key} must be a JSON object.")
    return value


def parse_event(
    event: Any,
    defaults: BatchDefaults,
    *,
    forced_type: str | None = None,
    max_bytes: int,
) -> dict[str, Any]:
    """Validate one event and return its row. Raises EventError."""
    if not isinstance(event, dict):
        raise EventError("Each event must be a JSON object.")
    kind = forced_type or event.get("type")
    # A list or an object is no type, and cannot be looked up in a set.
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        raise EventError(
            f"type must be one of {', '.join(sorted(EVENT_TYPES))}; got {str(kind)[:40]!r}."
        )
    if defaults.envelope_error:
        raise EventError(defaults.envelope_error)
    try:
        # Wrapped as deep as it will be stored (see MAX_NESTING).
        dumped = orjson.dumps([[event]])
    except orjson.JSONEncodeError as exc:
        # A parsed body fails to serialize only by nesting beyond what orjson
        # writes, or by a number out of range.
        why = _unstorable(exc)
        if why != "nesting":
            raise EventError(f"Event holds {why}.") from None
        raise EventError(
            f"Event is nested more than {MAX_NESTING} levels deep, which cannot be stored."
        ) from None
    size = len(dumped) - 4 + defaults.envelope_bytes
    if size > max_bytes:
        with_envelope = " with the batch's context" if defaults.envelope_bytes else ""
        raise EventError(f"Event is {size} bytes{with_envelope}; the limit is {max_bytes} bytes.")
    # PostgreSQL stores no NUL in text or jsonb; one would fail the whole batch.
    if b"\\u0000" in dumped and contains_nul(event):
        raise EventError("Event contains a NUL character (\\u0000), which cannot be stored.")

    user_id = _identifier(event, "userId")
    anonymous_id = _identifier(event, "anonymousId")
    if not user_id and not anonymous_id:
        raise EventError("Every event needs a userId or an anonymousId.")
    if _placeholder(user_id) and _placeholder(anonymous_id):
        # "undefined", "null", "0"...: an unset variable in the client, never a person.
        shown = " and ".join(repr(v[:40]) for v in (user_id, anonymous_id) if v)
        raise EventError(
            f"The event's ids ({shown}) are placeholder values, not identifiers; "
            "send a real userId or anonymousId."
        )
    name = event.get("event") if kind == EventType.TRACK else event.get("name")
    if kind == EventType.TRACK and (not isinstance(name, str) or not name.strip()):
        raise EventError("A track event needs an 'event' name (a non-empty string).")
    if name is not None and not isinstance(name, str):
        raise EventError("name must be a string.")
    if name and len(name) > 255:
        raise EventError("The event name is longer than 255 characters.")
    previous_id = _identifier(event, "previousId")
    if kind == EventType.ALIAS and not previous_id:
        raise EventError("An alias event needs a previousId.")
    group_id = _identifier(event, "groupId")
    if kind == EventType.GROUP and not group_id:
        raise EventError("A group event needs a groupId.")
    message_id = event.get("messageId")
    if message_id is None or message_id == "":
        message_id = f"cdp-{uuid.uuid4()}"
    elif not isinstance(message_id, str | int) or isinstance(message_id, bool):
        raise EventError("messageId must be a string.")
    message_id = str(message_id)
    if len(message_id) > MAX_ID_LENGTH:
        raise EventError(f"messageId is longer than {MAX_ID_LENGTH} characters.")

    properties = _object(event, "properties")
    traits = _object(event, "traits")
    context = _object(event, "context")
    if defaults.context:
        context = {**defaults.context, **context}
    if defaults.ip and "ip" not in context:
        context["ip"] = defaults.ip

    timestamp = parse_timestamp(event.get("timestamp"), "timestamp")
    original = parse_timestamp(event.get("originalTimestamp"), "originalTimestamp") or timestamp
    sent_at = parse_timestamp(event.get("sentAt"), "sentAt") or defaults.sent_at
    corrected, implausible = _event_time(original, sent_at, defaults)

    extra = {k: v for k, v in event.items() if k not in _COLUMN_KEYS}
    if defaults.integrations and "integrations" not in extra:
        extra["integrations"] = defaults.integrations

    return {
        "message_id": message_id,
        "type": kind,
        "event": name if kind == EventType.TRACK else "",
        "name": (name or "") if kind != EventType.TRACK else "",
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "previous_id": previous_id,
        "group_id": group_id,
        "timestamp": corrected,
        "original_timestamp": original,
        "sent_at": sent_at,
        "received_at": defaults.received_at,
        "timestamp_corrected": implausible,
        "properties": properties,
        "traits": traits,
        "context": context,
        "extra": extra,
    }


def _event_time(
    original: datetime | None, sent_at: datetime | None, defaults: BatchDefaults
) -> tuple[datetime, bool]:
    """The event's time, and whether a client time was implausible (outside the
    window of ``time_window``) and so not used. The sent values are stored as
    they are either way (``original_timestamp``, ``sent_at``)."""
    received_at = defaults.received_at
    if original is None:
        return received_at, False

    def plausible(value: datetime) -> bool:
        return (defaults.earliest is None or value >= defaults.earliest) and (
            defaults.latest is None or value <= defaults.latest
        )

    if sent_at is not None and not defaults.historical:
        if not plausible(sent_at):
            # A sending time from a wrong clock: correcting by it would move the
            # event as far (sentAt 0001-01-01 once made an event of today 4052's).
            return (original, True) if plausible(original) else (received_at, True)
        # Segment's clock-skew correction: the client's clock may be wrong, but the
        # time between the event and its sending is right.
        try:
            corrected = received_at - (sent_at - original)
        except OverflowError:
            return received_at, True
        return (corrected, False) if plausible(corrected) else (received_at, True)
    # No sending time, or history (/v1/import): the client's time as it is.
    return (original, False) if plausible(original) else (received_at, True)

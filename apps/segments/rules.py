"""What a condition tree means: the plan both implementations run, and the
real-time evaluator (pure Python, no database).

``plan_build`` turns a valid tree (apps/segments/conditions.py) into a plan: the
boolean skeleton and its leaves, numbered. A ``segment`` node that refers to a
rule segment is replaced by that segment's own condition (references cannot
form a cycle), so a segment's members depend only on data, never on the order
in which segments were refreshed; one that refers to a segment whose members
another app writes (a cluster persona) reads its current memberships.

``evaluate(plan, facts, now)`` answers for one profile; apps/segments/compiler.py
answers the same question for every profile in one SQL query. The semantics,
which both follow exactly (a hypothesis test holds them to it):

- A missing value is null. ``exists`` is "present and not null"; ``not_equals``,
  ``not_in`` and ``not_exists`` are exact complements of ``equals``, ``in`` and
  ``exists``, so a profile without the trait is "not equal" to any value.
- ``equals`` compares typed JSON values: strings with strings, numbers with
  numbers (exactly, as decimals: 5 equals 5.0), booleans with booleans; ``null``
  equals only a missing or null value.
- ``gt``/``gte``/``lt``/``lte``/``between`` compare numbers with numbers, or, for a
  date value, instants with instants; a JSON string counts as a date when it is
  ISO 8601 of the strict form ``YYYY-MM-DD[THH:MM:SS[.ffffff][Z|+HH:MM]]``, with
  a year from 1900 to 2199 (no offset: UTC).
- ``contains`` is a substring of a string, or an element of a list (typed
  equality); ``starts_with`` is on strings; both are case-sensitive.
- ``within_last_days N``: from N days before now up to now; ``before_days_ago N``:
  earlier than N days before now.
- ``performed`` counts the profile's events named ``event`` (``Event.event``)
  inside the window whose every ``where`` filter holds: ``within_seconds W`` is
  a timestamp after now - W; ``between [a, b]`` is a to b inclusive; no window is
  all time. Then ``count >= times`` (``=``, ``<``).
- Features are compared by kind (number, date, text, boolean, list: see
  ``FEATURE_KINDS``), from the stored row (a profile without a row has the
  features of no events).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from .features import cart_abandoned, top_categories

NUMBER, DATE, TEXT, BOOLEAN, LIST = "number", "date", "text", "boolean", "list"
FEATURE_KINDS: dict[str, str] = {
    "orders_count": NUMBER,
    "revenue_total": NUMBER,
    "average_order_value": NUMBER,
    "first_order_at": DATE,
    "last_order_at": DATE,
    "days_since_last_order": NUMBER,
    "first_seen_at": DATE,
    "last_seen_at": DATE,
    "active_days": NUMBER,
    "sessions_count": NUMBER,
    "average_session_seconds": NUMBER,
    "page_views": NUMBER,
    "product_views": NUMBER,
    "top_categories": LIST,
    "cart_adds": NUMBER,
    "cart_abandoned": BOOLEAN,
    "email_opens": NUMBER,
    "email_clicks": NUMBER,
    "last_device": TEXT,
    "last_country": TEXT,
    "rfm_recency": NUMBER,
    "rfm_frequency": NUMBER,
    "rfm_monetary": NUMBER,
    "rfm_group": TEXT,
}
# Which operators each kind of feature takes.
KIND_OPERATORS: dict[str, frozenset[str]] = {
    NUMBER: frozenset(
        {"equals", "not_equals", "in", "not_in", "gt", "gte", "lt", "lte", "between"}
        | {"exists", "not_exists"}
    ),
    DATE: frozenset(
        {"gt", "gte", "lt", "lte", "between", "within_last_days", "before_days_ago"}
        | {"exists", "not_exists"}
    ),
    TEXT: frozenset(
        {"equals", "not_equals", "in", "not_in", "contains", "starts_with"}
        | {"exists", "not_exists"}
    ),
    BOOLEAN: frozenset({"equals", "not_equals"}),
    LIST: frozenset({"contains", "exists", "not_exists"}),
}
NEGATIONS = {"not_equals": "equals", "not_in": "in", "not_exists": "exists"}
AVERAGE_ORDER_PLACES = Decimal("0.0001")
AVERAGE_SESSION_PLACES = Decimal("0.1")
_ISO = re.compile(
    r"(19|20|21)[0-9]{2}-[0-9]{2}-[0-9]{2}"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])?)?"
)


# -- the plan ---------------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    index: int
    path: str  # where it stands in the tree the user wrote ({key}: inside that segment)
    node: Mapping[str, Any]
    text: str

    @property
    def type(self) -> str:
        return str(self.node["type"])


@dataclass(frozen=True)
class Op:
    kind: str  # and, or, not, leaf
    children: tuple[Op, ...] = ()
    leaf: int = -1


@dataclass(frozen=True)
class Plan:
    root: Op
    leaves: tuple[Leaf, ...]

    def of_type(self, kind: str) -> list[Leaf]:
        return [leaf for leaf in self.leaves if leaf.type == kind]

    @property
    def event_names(self) -> set[str]:
        return {str(leaf.node["event"]) for leaf in self.of_type("performed")}

    @property
    def purposes(self) -> set[str]:
        return {str(leaf.node["purpose"]) for leaf in self.of_type("consent")}

    @property
    def member_keys(self) -> set[str]:
        return {str(leaf.node["key"]) for leaf in self.of_type("member")}


def plan_build(tree: Mapping[str, Any], conditions: Mapping[str, Any]) -> Plan:
    """``conditions``: each referable segment's condition by key (None for
    segments whose members are written by another app)."""
    leaves: list[Leaf] = []

    def build(node: Mapping[str, Any], path: str, seen: tuple[str, ...]) -> Op:
        kind = node["type"]
        if kind in ("and", "or"):
            return Op(
                kind,
                tuple(
                    build(child, f"{path}.children[{i}]", seen)
                    for i, child in enumerate(node["children"])
                ),
            )
        if kind == "not":
            return Op("not", (build(node["child"], f"{path}.child", seen),))
        if kind == "segment":
            key = node["key"]
            inner = conditions.get(key)
            if inner is not None:
                if key in seen:  # refused on save; never loop on stored data
                    raise ValueError(f"segment references form a cycle through {key!r}")
                return build(inner, f"{path}{{{key}}}", (*seen, key))
            node = {"type": "member", "key": key}
        leaves.append(Leaf(len(leaves), path, node, describe(node)))
        return Op("leaf", leaf=len(leaves) - 1)

    root = build(tree, "condition", ())
    return Plan(root, tuple(leaves))


def describe(node: Mapping[str, Any]) -> str:
    kind = node["type"]
    if kind == "performed":
        parts = [f"performed {node['event']}"]
        for item in node.get("where", []):
            parts.append(f"where {_comparison_text(item['path'], item)}")
        times, times_op = node.get("times", 1), node.get("times_op", ">=")
        word = {">=": "at least", "=": "exactly", "<": "fewer than"}[times_op]
        parts.append(f"{word} {times} time{'s' if times != 1 else ''}")
        if "within_seconds" in node:
            parts.append(f"in the last {_duration(node['within_seconds'])}")
        elif "between" in node:
            parts.append(f"between {node['between'][0]} and {node['between'][1]}")
        return " ".join(parts)
    if kind == "feature":
        return _comparison_text(node["name"], node)
    if kind == "trait":
        return _comparison_text(f"trait {node['path']}", node)
    if kind == "consent":
        return f"consents to {node['purpose']}"
    if kind == "member":
        return f"in segment {node['key']}"
    return kind


# How a reason reads an operator (for marketers: "orders_count ≥ 2").
_OP_TEXT = {
    "equals": "=",
    "not_equals": "≠",
    "gt": ">",
    "gte": "≥",
    "lt": "<",
    "lte": "≤",
    "in": "is one of",
    "not_in": "is none of",
    "contains": "contains",
    "starts_with": "starts with",
}


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return ", ".join(_shown(v) for v in value)
    return json.dumps(value, ensure_ascii=False)


def _comparison_text(subject: str, node: Mapping[str, Any]) -> str:
    op = node["op"]
    if op in ("exists", "not_exists"):
        return f"{subject} {'is set' if op == 'exists' else 'is not set'}"
    value: Any = node.get("value")
    if op == "between":
        return f"{subject} between {_shown(value[0])} and {_shown(value[1])}"
    if op == "within_last_days":
        return f"{subject} within the last {value} day{'s' if value != 1 else ''}"
    if op == "before_days_ago":
        return f"{subject} more than {value} day{'s' if value != 1 else ''} ago"
    return f"{subject} {_OP_TEXT.get(op, op)} {_shown(value)}"


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


# -- values ---------------------------------------------------------------


def is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def decimal_of(value: Any) -> Decimal:
    """A number as the decimal it was written as (0.1 is 0.1, not the binary float
    nearest to it), as PostgreSQL's numeric reads JSON."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def instant_of(value: Any) -> datetime | None:
    """A datetime, or a string of the strict ISO 8601 form (module docstring)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO.fullmatch(value):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def given_instant(value: str) -> datetime:
    """A date written in a condition (validated already); naive means UTC."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def json_at(value: Any, parts: Sequence[str]) -> Any:
    for part in parts:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _equal(value: Any, given: Any) -> bool:
    if given is None:
        return value is None
    if isinstance(given, bool):
        return isinstance(value, bool) and value is given
    if is_number(given):
        return is_number(value) and decimal_of(value) == decimal_of(given)
    if isinstance(given, str):
        return isinstance(value, str) and value == given
    return False


def _ordered(value: Any, given: Any) -> tuple[Any, Any] | None:
    """The pair to compare, when value and given are of one orderable kind."""
    if is_number(given):
        return (decimal_of(value), decimal_of(given)) if is_number(value) else None
    instant = instant_of(value)
    return None if instant is None else (instant, given_instant(given))


def compare(op: str, value: Any, given: Any, now: datetime) -> bool:
    """Does ``value`` (a JSON value, or a typed feature) pass ``op`` with ``given``?"""
    if op in NEGATIONS:
        return not compare(NEGATIONS[op], value, given, now)
    if op == "exists":
        return value is not None
    if op == "equals":
        return _equal(value, given)
    if op == "in":
        return any(_equal(value, item) for item in given)
    if op == "contains":
        if isinstance(value, str):
            return given in value
        if isinstance(value, list):
            return any(_equal(item, given) for item in value)
        return False
    if op == "starts_with":
        return isinstance(value, str) and value.startswith(given)
    if op in ("gt", "gte", "lt", "lte"):
        pair = _ordered(value, given)
        if pair is None:
            return False
        a, b = pair
        return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]
    if op == "between":
        low, high = _ordered(value, given[0]), _ordered(value, given[1])
        return low is not None and high is not None and low[1] <= low[0] <= high[1]
    if op in ("within_last_days", "before_days_ago"):
        instant = instant_of(value)
        if instant is None:
            return False
        since = now - timedelta(days=given)
        return since <= instant <= now if op == "within_last_days" else instant < since
    raise ValueError(f"unknown operator {op!r}")


def feature_values(row: Any, now: datetime, cart_after: timedelta) -> dict[str, Any]:
    """The typed features a condition compares (``row``: a ProfileFeatures, or
    None for a profile with no row), as compiler.py computes them in SQL."""
    from .models import ProfileFeatures

    state: Any = row if row is not None else ProfileFeatures()
    orders = state.orders_count
    revenue = decimal_of(state.revenue_total)
    sessions = state.sessions_count
    top = [item["category"] for item in top_categories(state.category_counts or {})]
    return {
        "orders_count": orders,
        "revenue_total": revenue,
        "average_order_value": (
            (revenue / orders).quantize(AVERAGE_ORDER_PLACES, ROUND_HALF_UP) if orders else None
        ),
        "first_order_at": state.first_order_at,
        "last_order_at": state.last_order_at,
        "days_since_last_order": (now - state.last_order_at).days if state.last_order_at else None,
        "first_seen_at": state.first_seen_at,
        "last_seen_at": state.last_seen_at,
        "active_days": state.active_days,
        "sessions_count": sessions,
        "average_session_seconds": (
            (Decimal(state.session_seconds_total) / sessions).quantize(
                AVERAGE_SESSION_PLACES, ROUND_HALF_UP
            )
            if sessions
            else None
        ),
        "page_views": state.page_views,
        "product_views": state.product_views,
        "top_categories": top or None,
        "cart_adds": state.cart_adds,
        "cart_abandoned": cart_abandoned(state, now, cart_after),
        "email_opens": state.email_opens,
        "email_clicks": state.email_clicks,
        "last_device": state.last_device or None,
        "last_country": state.last_country or None,
        "rfm_recency": state.rfm_recency,
        "rfm_frequency": state.rfm_frequency,
        "rfm_monetary": state.rfm_monetary,
        "rfm_group": state.rfm_group or None,
    }


# -- evaluation ---------------------------------------------------------------


@dataclass(frozen=True)
class EventFacts:
    event: str
    type: str
    name: str
    timestamp: datetime
    properties: Mapping[str, Any]
    context: Mapping[str, Any]
    traits: Mapping[str, Any]

    def at(self, path: str) -> Any:
        root, *rest = path.split(".")
        if root in ("properties", "context", "traits"):
            return json_at(getattr(self, root), rest)
        return json_at(getattr(self, root) or None, rest)


@dataclass
class Facts:
    """What one profile's evaluation reads."""

    features: Mapping[str, Any]
    traits: Mapping[str, Any]
    consents: Mapping[str, bool] = field(default_factory=dict)
    # The profile's events with the names the plan's performed nodes count.
    events: Sequence[EventFacts] = ()
    member_of: Collection[str] = ()


@dataclass(frozen=True)
class Outcome:
    member: bool
    held: tuple[bool, ...]
    values: tuple[Any, ...]
    # The earliest time a windowed count could change the answer with no new event.
    recheck_at: datetime | None


def performed_window(node: Mapping[str, Any], now: datetime) -> Callable[[datetime], bool]:
    if "within_seconds" in node:
        since = now - timedelta(seconds=node["within_seconds"])
        return lambda at: at > since
    if "between" in node:
        start, end = (given_instant(d) for d in node["between"])
        return lambda at: start <= at <= end
    return lambda at: True


def times_hold(count: int, times: int, times_op: str) -> bool:
    return (
        count >= times if times_op == ">=" else count == times if times_op == "=" else count < times
    )


def _performed(
    node: Mapping[str, Any], events: Sequence[EventFacts], now: datetime
) -> tuple[bool, int, datetime | None]:
    inside = performed_window(node, now)
    where = node.get("where", [])
    stamps = sorted(
        e.timestamp
        for e in events
        if e.event == node["event"]
        and inside(e.timestamp)
        and all(compare(w["op"], e.at(w["path"]), w.get("value"), now) for w in where)
    )
    count, times, times_op = len(stamps), node.get("times", 1), node.get("times_op", ">=")
    held = times_hold(count, times, times_op)
    recheck = None
    if "within_seconds" in node and stamps:
        # The count only falls as time passes, one event at a time, oldest first:
        # find when it first crosses to a count that changes the answer.
        window = timedelta(seconds=node["within_seconds"])
        for dropped in range(1, count + 1):
            if times_hold(count - dropped, times, times_op) != held:
                recheck = stamps[dropped - 1] + window
                break
    return held, count, recheck


def evaluate(plan: Plan, facts: Facts, now: datetime) -> Outcome:
    held: list[bool] = []
    values: list[Any] = []
    rechecks: list[datetime] = []
    for leaf in plan.leaves:
        node = leaf.node
        kind = node["type"]
        if kind == "performed":
            ok, count, recheck = _performed(node, facts.events, now)
            value: Any = count
            if recheck is not None:
                rechecks.append(recheck)
        elif kind == "feature":
            value = facts.features.get(node["name"])
            ok = compare(node["op"], value, node.get("value"), now)
        elif kind == "trait":
            value = json_at(facts.traits, node["path"].split("."))
            ok = compare(node["op"], value, node.get("value"), now)
        elif kind == "consent":
            value = ok = bool(facts.consents.get(node["purpose"], False))
        elif kind == "member":
            value = ok = node["key"] in facts.member_of
        else:
            raise ValueError(f"unknown leaf {kind!r}")
        held.append(ok)
        values.append(value)

    def run(op: Op) -> bool:
        if op.kind == "leaf":
            return held[op.leaf]
        if op.kind == "and":
            return all(run(c) for c in op.children)
        if op.kind == "or":
            return any(run(c) for c in op.children)
        return not run(op.children[0])

    return Outcome(run(plan.root), tuple(held), tuple(values), min(rechecks, default=None))


def jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def reason_build(plan: Plan, outcome: Outcome, *, source: str, version: int) -> dict[str, Any]:
    """Why a profile is (or is not) in the segment: every condition, whether it
    held and the value it saw. The same shape as the refresh's SQL builds."""
    return {
        "source": source,
        "version": version,
        "conditions": [
            {
                "path": leaf.path,
                "condition": leaf.text,
                "held": held,
                "value": jsonable(value),
            }
            for leaf, held, value in zip(plan.leaves, outcome.held, outcome.values, strict=True)
        ],
    }

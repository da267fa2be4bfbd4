"""The rule segments' condition tree: its public JSON format, and its validation.

The format (the segments issue; API and admin accept exactly this)::

    {"type": "and", "children": [
      {"type": "performed", "event": "Product Viewed",
       "where": [{"path": "properties.category", "op": "equals", "value": "shoes"}],
       "times": 3, "times_op": ">=", "within_seconds": 3600},
      {"type": "feature", "name": "orders_count", "op": "gte", "value": 2},
      {"type": "trait", "path": "address.country", "op": "in", "value": ["DE", "AT"]},
      {"type": "not", "child": {"type": "segment", "key": "churned"}},
      {"type": "consent", "purpose": "personalization"}
    ]}

``condition_errors`` returns every problem, each naming the bad node by its path
(``condition.children[1].times: must be a positive integer``), so that a 400 can
say all of them at once; ``condition_validate`` raises with them. Unknown
features, purposes and segment keys, and segment references that form a cycle,
are refused through the lookups the caller passes (the database's, or a test's).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .features import PUBLIC_FEATURES
from .rules import BOOLEAN, DATE, FEATURE_KINDS, KIND_OPERATORS, NUMBER, TEXT

NODE_TYPES = ("and", "or", "not", "performed", "feature", "trait", "segment", "consent")
OPERATORS = (
    "equals",
    "not_equals",
    "in",
    "not_in",
    "contains",
    "starts_with",
    "gt",
    "gte",
    "lt",
    "lte",
    "between",
    "exists",
    "not_exists",
    "within_last_days",
    "before_days_ago",
)
TIMES_OPS = (">=", "=", "<")
# What each operator takes as its value.
_LIST_OPS = frozenset({"in", "not_in"})
_NO_VALUE_OPS = frozenset({"exists", "not_exists"})
_NUMBER_OPS = frozenset({"gt", "gte", "lt", "lte"})
_DAYS_OPS = frozenset({"within_last_days", "before_days_ago"})
_TEXT_OPS = frozenset({"contains", "starts_with"})
MAX_DEPTH = 20
MAX_NODES = 200
MAX_WINDOW_SECONDS = 366 * 24 * 3600
PATH_ROOTS = ("properties", "context", "traits", "event", "name", "type")


class ConditionInvalid(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass
class Lookups:
    """What validation checks names against. ``segment_refs(key)`` gives the keys
    the stored segment ``key`` refers to (None: no such segment)."""

    purposes: Collection[str] = ()
    segment_refs: Callable[[str], Iterable[str] | None] = lambda key: None
    features: Collection[str] = PUBLIC_FEATURES
    # The segment being saved: its own key may not be reached again.
    own_key: str | None = None


def condition_validate(tree: Any, lookups: Lookups, *, root: str = "condition") -> None:
    errors = condition_errors(tree, lookups, root=root)
    if errors:
        raise ConditionInvalid(errors)


def condition_errors(tree: Any, lookups: Lookups, *, root: str = "condition") -> list[str]:
    errors: list[str] = []
    count = [0]
    _node(tree, root, 0, lookups, errors, count)
    if not errors:
        errors.extend(_cycles(tree, root, lookups))
    return errors


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | bool) or _is_number(value)


def _node(
    node: Any, path: str, depth: int, lookups: Lookups, errors: list[str], count: list[int]
) -> None:
    count[0] += 1
    if count[0] > MAX_NODES:
        if count[0] == MAX_NODES + 1:
            errors.append(f"{path}: the tree has more than {MAX_NODES} nodes")
        return
    if depth > MAX_DEPTH:
        errors.append(f"{path}: nested more than {MAX_DEPTH} levels deep")
        return
    if not isinstance(node, dict):
        errors.append(f"{path}: must be an object with a type")
        return
    kind = node.get("type")
    if kind not in NODE_TYPES:
        errors.append(f"{path}.type: must be one of {', '.join(NODE_TYPES)}")
        return
    allowed = _FIELDS[kind]
    for key in sorted(k for k in node if k not in allowed):
        errors.append(f"{path}.{key}: is not a field of a {kind} node")
    if kind in ("and", "or"):
        children = node.get("children")
        if not isinstance(children, list) or not children:
            errors.append(f"{path}.children: must be a non-empty list of conditions")
            return
        for i, child in enumerate(children):
            _node(child, f"{path}.children[{i}]", depth + 1, lookups, errors, count)
    elif kind == "not":
        if "child" not in node:
            errors.append(f"{path}.child: is required")
            return
        _node(node["child"], f"{path}.child", depth + 1, lookups, errors, count)
    elif kind == "performed":
        _performed(node, path, errors)
    elif kind == "feature":
        name = node.get("name")
        # Text first: a list or an object is unhashable, and no name either way.
        if not isinstance(name, str) or name not in lookups.features:
            errors.append(f"{path}.name: unknown feature {_shown(name)}")
        before = len(errors)
        _comparison(node, path, errors)
        if len(errors) == before and isinstance(name, str) and name in FEATURE_KINDS:
            _feature_kind(node, path, FEATURE_KINDS[name], errors)
    elif kind == "trait":
        _trait_path(node.get("path"), f"{path}.path", errors)
        _comparison(node, path, errors)
    elif kind == "segment":
        key = node.get("key")
        if not isinstance(key, str) or not key:
            errors.append(f"{path}.key: must be a segment key")
        elif key != lookups.own_key and lookups.segment_refs(key) is None:
            errors.append(f"{path}.key: no segment has the key {key!r}")
    elif kind == "consent":
        purpose = node.get("purpose")
        if not isinstance(purpose, str) or purpose not in lookups.purposes:
            errors.append(f"{path}.purpose: unknown purpose {_shown(purpose)}")


_FIELDS: dict[str, frozenset[str]] = {
    "and": frozenset({"type", "children"}),
    "or": frozenset({"type", "children"}),
    "not": frozenset({"type", "child"}),
    "performed": frozenset(
        {"type", "event", "where", "times", "times_op", "within_seconds", "between"}
    ),
    "feature": frozenset({"type", "name", "op", "value"}),
    "trait": frozenset({"type", "path", "op", "value"}),
    "segment": frozenset({"type", "key"}),
    "consent": frozenset({"type", "purpose"}),
}


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else f"({type(value).__name__})"


def _trait_path(value: Any, path: str, errors: list[str]) -> None:
    if not isinstance(value, str) or not value or any(not p for p in value.split(".")):
        errors.append(f"{path}: must be a dotted path such as address.country")


def _comparison(node: dict[str, Any], path: str, errors: list[str]) -> None:
    op = node.get("op")
    if op not in OPERATORS:
        errors.append(f"{path}.op: must be one of {', '.join(OPERATORS)}")
        return
    value = node.get("value")
    where = f"{path}.value"
    if op in _NO_VALUE_OPS:
        if "value" in node:
            errors.append(f"{where}: {op} takes no value")
    elif op in _LIST_OPS:
        if not isinstance(value, list) or not value or not all(_is_scalar(v) for v in value):
            errors.append(f"{where}: {op} needs a non-empty list of values")
    elif op in _NUMBER_OPS:
        if not _is_number(value) and not _is_date(value):
            errors.append(f"{where}: {op} needs a number or an ISO 8601 date")
    elif op == "between":
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not (all(_is_number(v) for v in value) or all(_is_date(v) for v in value))
        ):
            errors.append(f"{where}: between needs [low, high], two numbers or two dates")
        elif not _ordered(value):
            errors.append(f"{where}: between needs low <= high")
    elif op in _DAYS_OPS:
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            errors.append(f"{where}: {op} needs a whole number of days, 0 or more")
    elif op in _TEXT_OPS:
        if not isinstance(value, str) or not value:
            errors.append(f"{where}: {op} needs a non-empty string")
    elif not _is_scalar(value) or "value" not in node:
        errors.append(f"{where}: {op} needs a string, a number, true, false or null")


def _feature_kind(node: dict[str, Any], path: str, kind: str, errors: list[str]) -> None:
    """A feature is compared as what it is (rules.FEATURE_KINDS): a number with
    numbers, a date with dates, a text with strings, a boolean with true or false."""
    op, name = node["op"], node["name"]
    if op not in KIND_OPERATORS[kind]:
        allowed = ", ".join(o for o in OPERATORS if o in KIND_OPERATORS[kind])
        errors.append(f"{path}.op: the {kind} feature {name} takes {allowed}")
        return
    value = node.get("value")
    values = value if isinstance(value, list) else [value]
    if op in _NO_VALUE_OPS or op in _DAYS_OPS:
        return
    if kind == NUMBER and not all(_is_number(v) for v in values):
        errors.append(f"{path}.value: {name} is a number: compare it with numbers")
    elif kind == DATE and not all(_is_date(v) for v in values):
        errors.append(f"{path}.value: {name} is a date: compare it with ISO 8601 dates")
    elif kind == TEXT and not all(isinstance(v, str) for v in values):
        errors.append(f"{path}.value: {name} is a text: compare it with strings")
    elif kind == BOOLEAN and not isinstance(value, bool):
        errors.append(f"{path}.value: {name} is true or false: compare it with true or false")


def _ordered(pair: list[Any]) -> bool:
    if _is_number(pair[0]):
        return bool(pair[0] <= pair[1])
    low, high = _date(pair[0]), _date(pair[1])
    return low is not None and high is not None and low <= high


def _is_date(value: Any) -> bool:
    return isinstance(value, str) and _date(value) is not None


def _date(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # Naive dates are UTC, so that any two compare.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _performed(node: dict[str, Any], path: str, errors: list[str]) -> None:
    event = node.get("event")
    if not isinstance(event, str) or not event.strip():
        errors.append(f"{path}.event: must be an event name")
    times = node.get("times", 1)
    if not _is_int(times) or times < 1:
        errors.append(f"{path}.times: must be a positive integer")
    times_op = node.get("times_op", ">=")
    if times_op not in TIMES_OPS:
        errors.append(f"{path}.times_op: must be one of {', '.join(TIMES_OPS)}")
    has_window = "within_seconds" in node
    has_between = "between" in node
    if has_window and has_between:
        errors.append(f"{path}: give within_seconds or between, not both")
    if has_window:
        seconds = node["within_seconds"]
        if not _is_int(seconds) or not 1 <= seconds <= MAX_WINDOW_SECONDS:
            errors.append(
                f"{path}.within_seconds: must be a whole number of seconds from 1 to "
                f"{MAX_WINDOW_SECONDS}"
            )
    if has_between:
        span = node["between"]
        if not isinstance(span, list) or len(span) != 2 or not all(_is_date(d) for d in span):
            errors.append(f"{path}.between: must be [start, end], two ISO 8601 dates")
        elif not _ordered(span):
            errors.append(f"{path}.between: the start must not be after the end")
    where = node.get("where", [])
    if not isinstance(where, list):
        errors.append(f"{path}.where: must be a list of filters")
        return
    for i, item in enumerate(where):
        item_path = f"{path}.where[{i}]"
        if not isinstance(item, dict):
            errors.append(f"{item_path}: must be an object with path, op and value")
            continue
        for key in sorted(k for k in item if k not in ("path", "op", "value")):
            errors.append(f"{item_path}.{key}: is not a field of a filter")
        filter_path = item.get("path")
        if not isinstance(filter_path, str) or filter_path.split(".")[0] not in PATH_ROOTS:
            errors.append(
                f"{item_path}.path: must be an event path starting with "
                f"{', '.join(PATH_ROOTS)} (such as properties.category)"
            )
        elif any(not p for p in filter_path.split(".")):
            errors.append(f"{item_path}.path: must be a dotted path such as properties.category")
        _comparison(item, item_path, errors)


def segment_keys_referenced(tree: Any) -> list[str]:
    """The segment keys a (valid) tree refers to, in order, once each."""
    keys: list[str] = []

    def walk(node: Any) -> None:
        if not isinstance(node, dict):
            return
        key = node.get("key")
        if node.get("type") == "segment" and isinstance(key, str) and key not in keys:
            keys.append(key)
        for child in node.get("children") or []:
            walk(child)
        if "child" in node:
            walk(node["child"])

    walk(tree)
    return keys


def _cycles(tree: Any, root: str, lookups: Lookups) -> list[str]:
    """A segment that refers, through others, back to itself could never be
    evaluated: refuse the first such path, named."""
    start = lookups.own_key
    for key in segment_keys_referenced(tree):
        chain = _chain_back(key, start, lookups, [key], set())
        if chain is not None:
            shown = " -> ".join([start or "this segment", *chain])
            return [f"{root}: segment references form a cycle ({shown})"]
    return []


def _chain_back(
    key: str, start: str | None, lookups: Lookups, chain: list[str], visited: set[str]
) -> list[str] | None:
    if start is not None and key == start:
        return chain
    if key in visited:
        # A cycle among other segments (not through this one) was refused when
        # they were saved; stop walking it.
        return None
    visited.add(key)
    for ref in lookups.segment_refs(key) or ():
        found = _chain_back(ref, start, lookups, [*chain, ref], visited)
        if found is not None:
            return found
    return None

"""A condition tree's plan (apps/segments/rules.py) as one PostgreSQL query over
every live profile: the batch side of rule segments.

Each leaf compiles to a boolean expression that is never NULL (so that ``not``
is an exact complement, as in the evaluator) and to the value it saw (for the
reason). Features are columns of ``segments_profilefeatures``, read through one
LEFT JOIN; each ``performed`` node is one grouped subquery over the events it
counts, LEFT JOINed by profile; traits and event paths are ``jsonb`` lookups key
by key (``->``, never into arrays), with ``cdp_iso_ts`` (migration 0002) for the
strict ISO 8601 dates. rules.py states the semantics both follow.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection

from apps.consent.selectors import UnknownPurpose, profiles_with_consent
from apps.identity.models import Profile

from .models import Segment
from .rules import (
    BOOLEAN,
    DATE,
    FEATURE_KINDS,
    LIST,
    NEGATIONS,
    NUMBER,
    TEXT,
    Leaf,
    Op,
    Plan,
    decimal_of,
    given_instant,
)

_COUNTS = (
    "orders_count",
    "active_days",
    "sessions_count",
    "page_views",
    "product_views",
    "cart_adds",
    "email_opens",
    "email_clicks",
)


class _Query:
    """Collects named parameters and joins while a plan is compiled."""

    def __init__(self, now: datetime) -> None:
        self.params: dict[str, Any] = {}
        self.joins: list[str] = []
        self.features = False
        self.now_at = now
        self.now = self.p(now)
        self.rechecks: list[str] = []

    def p(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"%({name})s"

    def text(self, value: str) -> str:
        return f"{self.p(value)}::text"

    def feature(self, name: str) -> str:
        self.features = True
        if name in _COUNTS:
            return f"COALESCE(f.{name}, 0)"
        if name == "revenue_total":
            return "COALESCE(f.revenue_total, 0)"
        if name == "average_order_value":
            return (
                "CASE WHEN f.orders_count > 0 THEN round(f.revenue_total / f.orders_count, 4) END"
            )
        if name == "days_since_last_order":
            return f"floor(extract(epoch FROM ({self.now}::timestamptz - f.last_order_at)) / 86400)"
        if name == "average_session_seconds":
            return (
                "CASE WHEN f.sessions_count > 0 THEN "
                "round(f.session_seconds_total::numeric / f.sessions_count, 1) END"
            )
        if name == "cart_abandoned":
            after = timedelta(seconds=settings.CDP["CART_ABANDONED_AFTER_SECONDS"])
            cutoff = self.p(self.now_at - after)
            return (
                f"(f.last_cart_at IS NOT NULL AND f.last_cart_at <= {cutoff}::timestamptz "
                "AND (f.last_order_at IS NULL OR f.last_order_at < f.last_cart_at))"
            )
        if FEATURE_KINDS[name] == TEXT:
            return f"NULLIF(f.{name}, '')"
        return f"f.{name}"  # dates and RFM scores, null when unknown


def _now_value(q: _Query) -> datetime:
    return q.now_at


def _typed_compare(q: _Query, op: str, expr: str, kind: str, given: Any) -> str:
    """A feature's typed SQL expression against ``given`` (not yet COALESCEd)."""
    if op == "exists":
        if kind == LIST:
            return "(f.category_counts IS NOT NULL AND f.category_counts <> '{}'::jsonb)"
        return f"({expr} IS NOT NULL)"

    def value(v: Any) -> str:
        if kind == NUMBER:
            return f"{q.p(decimal_of(v))}::numeric"
        if kind == DATE:
            return f"{q.p(given_instant(v))}::timestamptz"
        if kind == BOOLEAN:
            return f"{q.p(bool(v))}::boolean"
        return q.text(v)

    if op == "equals":
        return f"({expr} = {value(given)})"
    if op == "in":
        return f"({expr} IN ({', '.join(value(v) for v in given)}))"
    if op in ("gt", "gte", "lt", "lte"):
        sign = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        return f"({expr} {sign} {value(given)})"
    if op == "between":
        return f"({expr} BETWEEN {value(given[0])} AND {value(given[1])})"
    if op == "contains":
        if kind == LIST:
            return (
                f"({q.text(given)} IN (SELECT c.key FROM jsonb_each(f.category_counts) AS c "
                'ORDER BY (c.value)::numeric DESC, c.key COLLATE "C" LIMIT 5))'
            )
        return f"(strpos({expr}, {q.text(given)}) > 0)"
    if op == "starts_with":
        return f"starts_with({expr}, {q.text(given)})"
    if op in ("within_last_days", "before_days_ago"):
        now = _now_value(q)
        since = f"{q.p(now - timedelta(days=given))}::timestamptz"
        if op == "within_last_days":
            return f"({expr} BETWEEN {since} AND {q.now}::timestamptz)"
        return f"({expr} < {since})"
    raise ValueError(f"unknown operator {op!r}")


def _json_equal(q: _Query, j: str, given: Any) -> str:
    if given is None:
        return f"({j} IS NULL OR {j} = 'null'::jsonb)"
    if isinstance(given, bool):
        return f"({j} = '{'true' if given else 'false'}'::jsonb)"
    if isinstance(given, str):
        return f"({j} = to_jsonb({q.text(given)}))"
    return (
        f"(CASE WHEN jsonb_typeof({j}) = 'number' "
        f"THEN ({j})::numeric = {q.p(decimal_of(given))}::numeric END)"
    )


def _json_order(q: _Query, j: str, given: Any) -> tuple[str, str]:
    """(the JSON value as an orderable SQL value, given as one) for numbers or dates."""
    if isinstance(given, int | float) and not isinstance(given, bool):
        return (
            f"(CASE WHEN jsonb_typeof({j}) = 'number' THEN ({j})::numeric END)",
            f"{q.p(decimal_of(given))}::numeric",
        )
    return f"cdp_iso_ts({j})", f"{q.p(given_instant(given))}::timestamptz"


def _json_compare(q: _Query, op: str, j: str, given: Any) -> str:
    """A jsonb value (NULL when missing) against ``given`` (not yet COALESCEd)."""
    if op == "exists":
        return f"({j} IS NOT NULL AND {j} <> 'null'::jsonb)"
    if op == "equals":
        return _json_equal(q, j, given)
    if op == "in":
        return "(" + " OR ".join(f"COALESCE({_json_equal(q, j, v)}, false)" for v in given) + ")"
    if op == "contains":
        x = q.text(given)
        return (
            f"(CASE jsonb_typeof({j}) WHEN 'string' THEN strpos({j} #>> '{{}}', {x}) > 0 "
            f"WHEN 'array' THEN EXISTS (SELECT 1 FROM jsonb_array_elements({j}) AS el(v) "
            f"WHERE el.v = to_jsonb({x})) ELSE false END)"
        )
    if op == "starts_with":
        return (
            f"(CASE WHEN jsonb_typeof({j}) = 'string' "
            f"THEN starts_with({j} #>> '{{}}', {q.text(given)}) ELSE false END)"
        )
    if op in ("gt", "gte", "lt", "lte"):
        sign = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        left, right = _json_order(q, j, given)
        return f"({left} {sign} {right})"
    if op == "between":
        left, low = _json_order(q, j, given[0])
        _, high = _json_order(q, j, given[1])
        return f"({left} BETWEEN {low} AND {high})"
    if op in ("within_last_days", "before_days_ago"):
        now = _now_value(q)
        since = f"{q.p(now - timedelta(days=given))}::timestamptz"
        if op == "within_last_days":
            return f"(cdp_iso_ts({j}) BETWEEN {since} AND {q.now}::timestamptz)"
        return f"(cdp_iso_ts({j}) < {since})"
    raise ValueError(f"unknown operator {op!r}")


def _never_null(expr: str, op: str) -> str:
    """COALESCE the base comparison to false, then negate for the not_ operators."""
    if op in NEGATIONS:
        return f"(NOT COALESCE({expr}, false))"
    return f"COALESCE({expr}, false)"


def _json_path(q: _Query, base: str, parts: Sequence[str]) -> str:
    expr = base
    for part in parts:
        expr = f"({expr} -> {q.text(part)})"
    return expr


def _event_path(q: _Query, path: str) -> str:
    root, *rest = path.split(".")
    if root in ("properties", "context", "traits"):
        return _json_path(q, f"e.{root}", rest)
    return _json_path(q, f"to_jsonb(NULLIF(e.{root}, ''))", rest)


def _base_op(op: str) -> str:
    return NEGATIONS.get(op, op)


def _leaf(q: _Query, leaf: Leaf) -> tuple[str, str]:
    """(boolean expression, value expression) of one leaf."""
    node = leaf.node
    kind = node["type"]
    if kind == "feature":
        name, op = node["name"], node["op"]
        expr = q.feature(name)
        base = _typed_compare(q, _base_op(op), expr, FEATURE_KINDS[name], node.get("value"))
        return _never_null(base, op), ("NULL" if FEATURE_KINDS[name] == LIST else expr)
    if kind == "trait":
        op = node["op"]
        j = _json_path(q, "p.traits", node["path"].split("."))
        return _never_null(_json_compare(q, _base_op(op), j, node.get("value")), op), j
    if kind == "performed":
        alias = f"pf{leaf.index}"
        where = ["e.profile_id IS NOT NULL", f"e.event = {q.text(node['event'])}"]
        if "within_seconds" in node:
            since = _now_value(q) - timedelta(seconds=node["within_seconds"])
            where.append(f"e.timestamp > {q.p(since)}::timestamptz")
            q.rechecks.append(
                f"{alias}.oldest + {q.p(timedelta(seconds=node['within_seconds']))}::interval"
            )
        elif "between" in node:
            start, end = (given_instant(d) for d in node["between"])
            where.append(
                f"e.timestamp BETWEEN {q.p(start)}::timestamptz AND {q.p(end)}::timestamptz"
            )
        for item in node.get("where", []):
            op = item["op"]
            j = _event_path(q, item["path"])
            where.append(_never_null(_json_compare(q, _base_op(op), j, item.get("value")), op))
        q.joins.append(
            f"LEFT JOIN (SELECT e.profile_id, count(*) AS n, min(e.timestamp) AS oldest "
            f"FROM events_event e WHERE {' AND '.join(where)} GROUP BY e.profile_id) {alias} "
            f"ON {alias}.profile_id = p.id"
        )
        count = f"COALESCE({alias}.n, 0)"
        times = q.p(int(node.get("times", 1)))
        sign = {">=": ">=", "=": "=", "<": "<"}[node.get("times_op", ">=")]
        return f"({count} {sign} {times})", count
    if kind == "consent":
        # Its value in the reason is whether it held, as the evaluator gives it.
        expr = _consent(q, node["purpose"])
        return expr, expr
    if kind == "member":
        sid = Segment.objects.filter(key=node["key"]).values_list("id", flat=True).first()
        if sid is None:
            return "false", "false"
        expr = (
            f"EXISTS (SELECT 1 FROM segments_membership m WHERE m.segment_id = {q.p(sid)} "
            "AND m.profile_id = p.id AND m.exited_at IS NULL)"
        )
        return expr, expr
    raise ValueError(f"unknown leaf {kind!r}")


def _consent(q: _Query, purpose: str) -> str:
    """The consent app's own selector, as a subquery (its semantics, not a copy)."""
    try:
        allowed = profiles_with_consent(Profile.objects.all(), purpose)
    except UnknownPurpose:
        return "false"
    sql, params = allowed.order_by().values("pk").query.sql_with_params()
    pieces = sql.split("%s")
    if len(pieces) != len(params) + 1:
        raise ValueError("unexpected placeholders in the consent selector's SQL")
    out = pieces[0]
    for param, piece in zip(params, pieces[1:], strict=True):
        out += q.p(param) + piece
    return f"(p.id IN ({out}))"


def _tree(op: Op, leaves: Sequence[str]) -> str:
    if op.kind == "leaf":
        return leaves[op.leaf]
    if op.kind == "not":
        return f"(NOT {_tree(op.children[0], leaves)})"
    joiner = " AND " if op.kind == "and" else " OR "
    return "(" + joiner.join(_tree(c, leaves) for c in op.children) + ")"


def _compile(plan: Plan, now: datetime) -> tuple[_Query, str, list[tuple[str, str]]]:
    q = _Query(now)
    compiled = [_leaf(q, leaf) for leaf in plan.leaves]
    where = _tree(plan.root, [held for held, _ in compiled])
    return q, where, compiled


def _from(q: _Query) -> str:
    joins = list(q.joins)
    if q.features:
        joins.insert(0, "LEFT JOIN segments_profilefeatures f ON f.profile_id = p.id")
    return "FROM identity_profile p " + " ".join(joins)


def member_ids(plan: Plan, *, now: datetime) -> set[uuid.UUID]:
    q, where, _ = _compile(plan, now)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT p.id {_from(q)} WHERE p.merged_into_id IS NULL AND {where}", q.params
        )
        return {row[0] for row in cursor.fetchall()}


def count_and_sample(plan: Plan, *, now: datetime, sample_size: int) -> tuple[int, list[uuid.UUID]]:
    q, where, _ = _compile(plan, now)
    body = f"{_from(q)} WHERE p.merged_into_id IS NULL AND {where}"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) {body}", q.params)
        count = cursor.fetchone()[0]
        cursor.execute(f"SELECT p.id {body} LIMIT {int(sample_size)}", q.params)
        sample = [row[0] for row in cursor.fetchall()]
    return count, sample


def stage(plan: Plan, *, token: int, now: datetime, version: int) -> None:
    """Write the plan's members, each with its reason and first recheck time, into
    the refresh's staging rows, in one INSERT ... SELECT."""
    q, where, compiled = _compile(plan, now)
    items = ", ".join(
        f"jsonb_build_object('path', {q.text(leaf.path)}, 'condition', {q.text(leaf.text)}, "
        f"'held', {held}, 'value', to_jsonb({value}))"
        for leaf, (held, value) in zip(plan.leaves, compiled, strict=True)
    )
    reason = (
        f"jsonb_build_object('source', 'refresh', 'version', {q.p(version)}::int, "
        f"'conditions', to_jsonb(ARRAY[{items}]::jsonb[]))"
    )
    recheck = f"LEAST({', '.join(q.rechecks)})" if q.rechecks else "NULL::timestamptz"
    sql = (
        "INSERT INTO segments_refreshstaging (refresh_token, profile_id, reason, recheck_at) "
        f"SELECT {q.p(token)}::bigint, p.id, {reason}, {recheck} {_from(q)} "
        f"WHERE p.merged_into_id IS NULL AND {where}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, q.params)

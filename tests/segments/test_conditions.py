"""The condition tree's validation: exact messages naming the bad node by path."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.segments.conditions import (
    NODE_TYPES,
    OPERATORS,
    ConditionInvalid,
    Lookups,
    condition_errors,
    condition_validate,
    segment_keys_referenced,
)

ISSUE_EXAMPLE = {
    "type": "and",
    "children": [
        {
            "type": "performed",
            "event": "Product Viewed",
            "where": [{"path": "properties.category", "op": "equals", "value": "shoes"}],
            "times": 3,
            "times_op": ">=",
            "within_seconds": 3600,
        },
        {"type": "feature", "name": "orders_count", "op": "gte", "value": 2},
        {"type": "trait", "path": "address.country", "op": "in", "value": ["DE", "AT"]},
        {"type": "not", "child": {"type": "segment", "key": "churned"}},
        {"type": "consent", "purpose": "personalization"},
    ],
}
SEGMENTS: dict[str, list[str]] = {"churned": [], "vip": ["big"], "big": [], "a": ["b"], "b": []}
LOOKUPS = Lookups(
    purposes={"personalization", "advertising"}, segment_refs=lambda key: SEGMENTS.get(key)
)


def _errors(tree: Any, lookups: Lookups = LOOKUPS) -> list[str]:
    return condition_errors(tree, lookups)


def test_the_issues_example_is_valid() -> None:
    assert _errors(ISSUE_EXAMPLE) == []
    assert segment_keys_referenced(ISSUE_EXAMPLE) == ["churned"]


def _with(child: dict[str, Any], at: int = 1) -> dict[str, Any]:
    children = list(ISSUE_EXAMPLE["children"])  # type: ignore[call-overload]
    children[at] = child
    return {"type": "and", "children": children}


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        (
            _with({"type": "performed", "event": "E", "times": 0}),
            "condition.children[1].times: must be a positive integer",
        ),
        (
            _with({"type": "performed", "event": "E", "times": "3"}),
            "condition.children[1].times: must be a positive integer",
        ),
        (
            _with({"type": "performed", "event": "E", "times_op": ">"}),
            "condition.children[1].times_op: must be one of >=, =, <",
        ),
        (
            _with({"type": "performed", "event": ""}),
            "condition.children[1].event: must be an event name",
        ),
        (
            _with({"type": "performed", "event": "E", "within_seconds": 0}),
            "condition.children[1].within_seconds: must be a whole number of seconds from 1 "
            "to 31622400",
        ),
        (
            _with(
                {
                    "type": "performed",
                    "event": "E",
                    "within_seconds": 60,
                    "between": ["2024-01-01", "2024-02-01"],
                }
            ),
            "condition.children[1]: give within_seconds or between, not both",
        ),
        (
            _with({"type": "performed", "event": "E", "between": ["2024-02-01", "2024-01-01"]}),
            "condition.children[1].between: the start must not be after the end",
        ),
        (
            _with({"type": "performed", "event": "E", "between": ["soon", "later"]}),
            "condition.children[1].between: must be [start, end], two ISO 8601 dates",
        ),
        (
            _with(
                {
                    "type": "performed",
                    "event": "E",
                    "where": [{"path": "x.y", "op": "equals", "value": "v"}],
                }
            ),
            "condition.children[1].where[0].path: must be an event path starting with "
            "properties, context, traits, event, name, type (such as properties.category)",
        ),
        (
            _with({"type": "feature", "name": "order_count", "op": "gte", "value": 2}),
            "condition.children[1].name: unknown feature 'order_count'",
        ),
        (
            _with({"type": "feature", "name": "orders_count", "op": "greater", "value": 2}),
            "condition.children[1].op: must be one of " + ", ".join(OPERATORS),
        ),
        (
            _with({"type": "feature", "name": "orders_count", "op": "gte", "value": "two"}),
            "condition.children[1].value: gte needs a number or an ISO 8601 date",
        ),
        (
            _with({"type": "feature", "name": "orders_count", "op": "between", "value": [5, 1]}),
            "condition.children[1].value: between needs low <= high",
        ),
        (
            _with({"type": "feature", "name": "orders_count", "op": "between", "value": [1]}),
            "condition.children[1].value: between needs [low, high], two numbers or two dates",
        ),
        (
            _with({"type": "trait", "path": "plan", "op": "in", "value": []}),
            "condition.children[1].value: in needs a non-empty list of values",
        ),
        (
            _with({"type": "trait", "path": "plan", "op": "exists", "value": 1}),
            "condition.children[1].value: exists takes no value",
        ),
        (
            _with({"type": "trait", "path": "a..b", "op": "exists"}),
            "condition.children[1].path: must be a dotted path such as address.country",
        ),
        (
            _with({"type": "trait", "path": "signup", "op": "within_last_days", "value": -1}),
            "condition.children[1].value: within_last_days needs a whole number of days, 0 or more",
        ),
        (
            _with({"type": "trait", "path": "plan", "op": "starts_with", "value": ""}),
            "condition.children[1].value: starts_with needs a non-empty string",
        ),
        (
            _with({"type": "trait", "path": "plan", "op": "equals", "value": {"a": 1}}),
            "condition.children[1].value: equals needs a string, a number, true, false or null",
        ),
        (
            _with({"type": "consent", "purpose": "marketing"}),
            "condition.children[1].purpose: unknown purpose 'marketing'",
        ),
        (
            _with({"type": "segment", "key": "nope"}),
            "condition.children[1].key: no segment has the key 'nope'",
        ),
        (
            _with({"type": "maybe"}),
            "condition.children[1].type: must be one of " + ", ".join(NODE_TYPES),
        ),
        (
            _with({"type": "not"}),
            "condition.children[1].child: is required",
        ),
        (
            _with({"type": "or", "children": []}),
            "condition.children[1].children: must be a non-empty list of conditions",
        ),
        (
            _with({"type": "consent", "purpose": "advertising", "extra": 1}),
            "condition.children[1].extra: is not a field of a consent node",
        ),
        (["not", "a", "node"], "condition: must be an object with a type"),
    ],
)
def test_an_invalid_tree_is_refused_naming_the_node(tree: Any, message: str) -> None:
    # when / then
    assert _errors(tree) == [message]
    with pytest.raises(ConditionInvalid) as refused:
        condition_validate(tree, LOOKUPS)
    assert refused.value.errors == [message]


def test_every_problem_is_named_at_once() -> None:
    tree = {
        "type": "or",
        "children": [
            {"type": "performed", "event": "E", "times": -1},
            {"type": "consent", "purpose": "nope"},
        ],
    }
    assert _errors(tree) == [
        "condition.children[0].times: must be a positive integer",
        "condition.children[1].purpose: unknown purpose 'nope'",
    ]


def test_a_reference_back_to_the_segment_being_saved_is_a_cycle() -> None:
    # given: a refers to b; saving b to refer to a would close the loop
    lookups = Lookups(segment_refs=lambda key: SEGMENTS.get(key), own_key="b")

    # when
    errors = _errors({"type": "segment", "key": "a"}, lookups)

    # then
    assert errors == ["condition: segment references form a cycle (b -> a -> b)"]


def test_a_segment_may_refer_to_itself_only_as_a_cycle() -> None:
    lookups = Lookups(segment_refs=lambda key: SEGMENTS.get(key), own_key="solo")
    assert _errors({"type": "segment", "key": "solo"}, lookups) == [
        "condition: segment references form a cycle (solo -> solo)"
    ]


def test_references_without_a_cycle_are_fine() -> None:
    lookups = Lookups(segment_refs=lambda key: SEGMENTS.get(key), own_key="new")
    assert _errors({"type": "segment", "key": "vip"}, lookups) == []


def test_depth_and_size_are_bounded() -> None:
    deep: dict[str, Any] = {"type": "consent", "purpose": "advertising"}
    for _ in range(25):
        deep = {"type": "not", "child": deep}
    assert _errors(deep)[0].endswith(": nested more than 20 levels deep")
    wide = {"type": "and", "children": [{"type": "consent", "purpose": "advertising"}] * 250}
    assert _errors(wide) == ["condition.children[199]: the tree has more than 200 nodes"]


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=15,
    )
)
def test_anything_is_refused_with_messages_or_accepted_never_an_exception(tree: Any) -> None:
    errors = _errors(tree)
    assert all(isinstance(e, str) and e.startswith("condition") for e in errors)

"""The two implementations of every node type agree: random condition trees over
random profiles, features and event histories give the same members from the
real-time evaluator (apps/segments/rules.py) and from the one SQL query
(apps/segments/compiler.py, PostgreSQL)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from apps.events.models import Event, Source
from apps.identity.models import Profile
from apps.segments import compiler
from apps.segments.conditions import Lookups, condition_errors
from apps.segments.memberships import facts_load
from apps.segments.models import ProfileFeatures
from apps.segments.rules import FEATURE_KINDS, KIND_OPERATORS, evaluate, plan_build

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the compiler is PostgreSQL's"),
]

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DATES = ["2026-05-31", "2026-06-01T11:30:00", "2026-05-01T00:00:00Z", "2025-12-24T10:00:00+02:00"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, 2, 3, 2.5, -1, 10]),
    st.sampled_from(["DE", "AT", "shoes", "bags", "sho", "", "2026-05-30", "2026-02-30", "x"]),
)
json_values = st.one_of(
    scalars,
    st.lists(st.sampled_from(["shoes", "bags", "DE", 1]), max_size=3),
    st.sampled_from(DATES),
)
instants = st.sampled_from(
    [NOW - timedelta(seconds=s) for s in (5, 400, 1800, 3599, 3601, 7200, 86400 * 3, 86400 * 40)]
    + [NOW + timedelta(seconds=30)]
)


def _comparison(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(
            lambda op, v: {"op": op, "value": v}, st.sampled_from(["equals", "not_equals"]), values
        ),
        st.builds(
            lambda op, v: {"op": op, "value": v},
            st.sampled_from(["in", "not_in"]),
            st.lists(values.filter(lambda v: not isinstance(v, list)), min_size=1, max_size=3),
        ),
        st.builds(
            lambda op, v: {"op": op, "value": v},
            st.sampled_from(["contains", "starts_with"]),
            st.sampled_from(["sho", "DE", "shoes", "b"]),
        ),
        st.builds(
            lambda op, v: {"op": op, "value": v},
            st.sampled_from(["gt", "gte", "lt", "lte"]),
            st.sampled_from([0, 1, 2.5, 3, *DATES]),
        ),
        st.builds(
            lambda v: {"op": "between", "value": v},
            st.sampled_from([[0, 2], [1, 1], [2.5, 10], [DATES[2], DATES[1]]]),
        ),
        st.builds(
            lambda op, v: {"op": op, "value": v},
            st.sampled_from(["within_last_days", "before_days_ago"]),
            st.sampled_from([0, 1, 2, 30]),
        ),
        st.builds(lambda op: {"op": op}, st.sampled_from(["exists", "not_exists"])),
    )


def _feature_leaf() -> st.SearchStrategy[dict[str, Any]]:
    def make(name: str, comparison: dict[str, Any]) -> dict[str, Any]:
        return {"type": "feature", "name": name, **comparison}

    feature_values = st.sampled_from(
        [0, 1, 2, 3, 2.5, 100.1235, "mobile", "desktop", "DE", "mob", True, False, *DATES]
    )
    return st.builds(make, st.sampled_from(sorted(FEATURE_KINDS)), _comparison(feature_values))


TRAIT_PATHS = ["country", "age", "tags", "signup", "vip", "address.country", "age.x"]
EVENT_PATHS = [
    "properties.category",
    "properties.price",
    "properties.tags",
    "context.page.path",
    "name",
    "event",
    "properties",
]
leaves = st.one_of(
    _feature_leaf(),
    st.builds(
        lambda path, c: {"type": "trait", "path": path, **c},
        st.sampled_from(TRAIT_PATHS),
        _comparison(json_values),
    ),
    st.builds(
        lambda event, where, times, times_op, window: {
            "type": "performed",
            "event": event,
            "where": where,
            "times": times,
            "times_op": times_op,
            **window,
        },
        st.sampled_from(["Product Viewed", "Order Completed"]),
        st.lists(
            st.builds(
                lambda path, c: {"path": path, **c},
                st.sampled_from(EVENT_PATHS),
                _comparison(json_values),
            ),
            max_size=2,
        ),
        st.integers(1, 3),
        st.sampled_from([">=", "=", "<"]),
        st.sampled_from(
            [
                {},
                {"within_seconds": 3600},
                {"within_seconds": 600},
                {"between": ["2026-05-01", "2026-06-01T11:50:00Z"]},
            ]
        ),
    ),
)
trees = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(
            lambda kind, children: {"type": kind, "children": children},
            st.sampled_from(["and", "or"]),
            st.lists(inner, min_size=1, max_size=3),
        ),
        st.builds(lambda child: {"type": "not", "child": child}, inner),
    ),
    max_leaves=5,
)

profiles = st.lists(
    st.fixed_dictionaries(
        {
            "traits": st.dictionaries(
                st.sampled_from(["country", "age", "tags", "signup", "vip"]),
                json_values,
                max_size=4,
            )
            | st.just({}),
            "address": st.one_of(st.none(), json_values),
            "features": st.one_of(
                st.none(),
                st.fixed_dictionaries(
                    {
                        "orders_count": st.integers(0, 4),
                        "revenue": st.sampled_from(["0", "2.5", "100.1235", "3.3333", "10"]),
                        "last_order_at": st.one_of(st.none(), instants),
                        "first_seen_at": st.one_of(st.none(), instants),
                        "sessions_count": st.integers(0, 3),
                        "session_seconds_total": st.integers(0, 4000),
                        "last_device": st.sampled_from(["", "mobile", "desktop"]),
                        "last_cart_at": st.one_of(st.none(), instants),
                        "category_counts": st.dictionaries(
                            st.sampled_from(["shoes", "bags", "a", "b", "c", "d", "Z"]),
                            st.integers(1, 4),
                            max_size=7,
                        ),
                        "rfm": st.one_of(st.none(), st.integers(1, 5)),
                        "rfm_group": st.sampled_from(["", "Champions", "At Risk"]),
                    }
                ),
            ),
            "events": st.lists(
                st.fixed_dictionaries(
                    {
                        "event": st.sampled_from(["Product Viewed", "Order Completed", "Other"]),
                        "at": instants,
                        "properties": st.dictionaries(
                            st.sampled_from(["category", "price", "tags"]), json_values, max_size=3
                        ),
                        "page": st.one_of(st.none(), st.sampled_from(["/shoes", "/bags"])),
                    }
                ),
                max_size=6,
            ),
        }
    ),
    min_size=1,
    max_size=5,
)


def _load(people: list[dict[str, Any]]) -> None:
    Event.objects.all().delete()
    ProfileFeatures.objects.all().delete()
    Profile.objects.all().delete()
    source = Source.objects.get_or_create(name="agree")[0]
    n = 0
    for person in people:
        traits = dict(person["traits"])
        if person["address"] is not None:
            traits["address"] = {"country": person["address"]}
        profile = Profile.objects.create(traits=traits)
        f = person["features"]
        if f is not None:
            ProfileFeatures.objects.create(
                profile=profile,
                orders_count=f["orders_count"],
                revenue_total=Decimal(f["revenue"]),
                last_order_at=f["last_order_at"],
                first_seen_at=f["first_seen_at"],
                sessions_count=f["sessions_count"],
                session_seconds_total=f["session_seconds_total"],
                last_device=f["last_device"],
                last_cart_at=f["last_cart_at"],
                category_counts=f["category_counts"],
                rfm_recency=f["rfm"],
                rfm_group=f["rfm_group"],
            )
        for e in person["events"]:
            n += 1
            Event.objects.create(
                source=source,
                message_id=f"m{n}",
                type="track",
                event=e["event"],
                timestamp=e["at"],
                received_at=e["at"],
                properties=e["properties"],
                context={"page": {"path": e["page"]}} if e["page"] else {},
                profile=profile,
            )


@settings(
    max_examples=int(os.environ.get("AGREE_EXAMPLES", 150)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(tree=trees, people=profiles)
def test_the_evaluator_and_the_sql_compiler_select_the_same_members(tree, people):
    assume(not condition_errors(tree, Lookups()))
    _load(people)
    plan = plan_build(tree, {})
    ids = list(Profile.objects.values_list("pk", flat=True))
    facts = facts_load(ids, [plan], NOW)
    in_python = {pid for pid in ids if evaluate(plan, facts[pid], NOW).member}
    event(
        f"members: {'none' if not in_python else 'all' if len(in_python) == len(ids) else 'some'}"
    )
    assert compiler.member_ids(plan, now=NOW) == in_python


def test_every_feature_kind_has_operators() -> None:
    assert set(FEATURE_KINDS.values()) <= set(KIND_OPERATORS)

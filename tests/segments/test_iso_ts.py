"""cdp_iso_ts (PostgreSQL, migration segments 0006) reads a JSON value as an
instant exactly as apps.segments.rules.instant_of does, without an EXCEPTION
block, so it also runs inside parallel workers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.segments.rules import instant_of

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the function is PostgreSQL's"),
]


def _sql(value: Any) -> Any:
    with connection.cursor() as cursor:
        cursor.execute("SELECT cdp_iso_ts(%s::jsonb)", [json.dumps(value)])
        return cursor.fetchone()[0]


def _two(n: int) -> str:
    return f"{n:02d}"


# Dates of the strict form with every field allowed to stray: month 00-19, day
# 00-39 (Feb 29 in leap and common years, Apr 31, century years), optional time,
# fraction and offset.
_dates = st.builds(
    lambda y, m, d: f"{y:04d}-{_two(m)}-{_two(d)}",
    st.sampled_from([1900, 1999, 2000, 2023, 2024, 2100, 2199, 1899, 2200]),
    st.integers(0, 19),
    st.integers(0, 39),
)
_times = st.builds(
    lambda h, mi, s, frac, off: f"T{_two(h)}:{_two(mi)}:{_two(s)}{frac}{off}",
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.sampled_from(["", ".5", ".123456", ".1234567"]),
    st.sampled_from(["", "Z", "+00:00", "-05:30", "+14:59", "+15:00", "+02"]),
)
_strings = st.one_of(
    st.builds(lambda d, t: d + t, _dates, st.one_of(st.just(""), _times)),
    # jsonb cannot hold NUL or a lone surrogate (PostgreSQL refuses \u0000 and
    # \ud9b5), so no value ever has one
    st.text(
        alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
        max_size=30,
    ),
)
_values = st.one_of(
    _strings, st.integers(), st.none(), st.booleans(), st.lists(st.integers(), max_size=2)
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=_values)
def test_sql_and_python_read_the_same_instant(value: Any) -> None:
    assert _sql(value) == instant_of(value)


@pytest.mark.parametrize(
    "text",
    [
        "2024-02-29",
        "2023-02-29",
        "1900-02-29",
        "2000-02-29",
        "2026-04-31",
        "2026-12-31T23:59:59.999999+14:59",
    ],
)
def test_leap_days_and_month_ends(text: str) -> None:
    assert _sql(text) == instant_of(text)
    assert (_sql(text) is None) == (text in {"2023-02-29", "1900-02-29", "2026-04-31"})


def test_runs_in_a_parallel_worker() -> None:
    """0002's version failed here: its EXCEPTION block opened a subtransaction,
    which parallel workers refuse."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL parallel_setup_cost = 0")
        cursor.execute("SET LOCAL parallel_tuple_cost = 0")
        cursor.execute("SET LOCAL min_parallel_table_scan_size = 0")
        cursor.execute("SET LOCAL force_parallel_mode = on")
        cursor.execute(
            "SELECT count(cdp_iso_ts(to_jsonb('2026-0' || (mod(i, 9) + 1) || '-15'))) "
            "FROM generate_series(1, 2000) AS i"
        )
        assert cursor.fetchone()[0] == 2000
        cursor.execute(
            "EXPLAIN SELECT count(cdp_iso_ts(to_jsonb('2026-01-15'::text))) "
            "FROM generate_series(1, 10)"
        )
        plan = " ".join(row[0] for row in cursor.fetchall())
    assert "Gather" in plan

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.consent.deadlines import add_months, due_date


@pytest.mark.parametrize(
    ("received", "extension", "due"),
    [
        (date(2025, 1, 31), 0, date(2025, 2, 28)),  # no 31 February: the month's last day
        (date(2024, 1, 31), 0, date(2024, 2, 29)),  # leap year
        (date(2024, 2, 29), 0, date(2024, 3, 29)),  # from a leap day: same day next month
        (date(2025, 1, 30), 0, date(2025, 2, 28)),
        (date(2025, 3, 15), 0, date(2025, 4, 15)),
        (date(2025, 3, 31), 0, date(2025, 4, 30)),
        (date(2025, 12, 31), 0, date(2026, 1, 31)),  # over the year end
        # extended: months added to the original due date (the earlier reading)
        (date(2025, 1, 31), 1, date(2025, 3, 28)),  # not 31 March
        (date(2025, 1, 31), 2, date(2025, 4, 28)),  # not 30 April
        (date(2024, 1, 31), 1, date(2024, 3, 29)),  # leap year
        (date(2025, 3, 31), 1, date(2025, 5, 30)),  # not 31 May
        (date(2025, 5, 15), 2, date(2025, 8, 15)),
        (date(2023, 12, 31), 2, date(2024, 3, 31)),
        (date(2023, 11, 30), 2, date(2024, 2, 29)),  # extension ending in a leap February
    ],
)
def test_due_date(received: date, extension: int, due: date) -> None:
    assert due_date(received, extension) == due


@pytest.mark.parametrize("extension", [-1, 3])
def test_extension_is_at_most_two_months(extension: int) -> None:
    with pytest.raises(ValueError, match="0 to 2 months"):
        due_date(date(2025, 1, 1), extension)


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31)), st.integers(0, 2))
def test_due_date_is_the_same_day_next_month_or_its_last_day_then_extended_from_there(
    received: date, extension: int
) -> None:
    first = due_date(received)
    months = (first.year - received.year) * 12 + first.month - received.month
    assert months == 1
    if first.day != received.day:
        # Only when that month is too short, and then its last day.
        assert first.day < received.day
        assert (first + timedelta(days=1)).day == 1
    due = due_date(received, extension)
    assert due == add_months(first, extension)
    # never later than months counted from receipt
    assert due <= add_months(received, 1 + extension)
    assert 28 * (1 + extension) <= (due - received).days <= 31 * (1 + extension)


def test_add_months_keeps_the_day_when_it_exists() -> None:
    assert add_months(date(2025, 5, 12), 14) == date(2026, 7, 12)

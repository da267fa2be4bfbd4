"""Data-subject request deadlines: extensions (Art. 12(3))."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from django.utils import timezone

from apps.consent.models import DataSubjectRequest, RequestEvent
from apps.consent.services.dsr import RequestRefused, dsr_create, dsr_extend

pytestmark = pytest.mark.django_db


@pytest.fixture
def today(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``today("2025-02-10")`` sets the clock (noon UTC)."""

    def set_day(day: str) -> None:
        at = datetime.fromisoformat(f"{day}T12:00:00").replace(tzinfo=UTC)
        monkeypatch.setattr(timezone, "now", lambda: at)

    return set_day


def test_an_extension_counts_from_the_original_due_date(today: Any) -> None:
    # given: received on 31 January: due on 28 February
    today("2025-02-10")
    request = dsr_create(
        type="access",
        subject="user_id:42",
        received_at=datetime(2025, 1, 31, 9, 0, tzinfo=UTC),
    )
    assert request.due_date == date(2025, 2, 28)
    # when: extended by one month, then by another, both within the first month
    request = dsr_extend(request=request, months=1, reason="Many systems to search")
    assert request.due_date == date(2025, 3, 28)  # not 31 March
    today("2025-02-28")
    request = dsr_extend(request=request, months=1, reason="Still more")
    # then
    assert request.due_date == date(2025, 4, 28)  # not 30 April
    assert request.extension_months == 2
    assert list(
        RequestEvent.objects.filter(request=request, action="extended").values_list(
            "note", flat=True
        )
    ) == [
        "2025-02-28 -> 2025-03-28: Many systems to search",
        "2025-03-28 -> 2025-04-28: Still more",
    ]


@pytest.mark.parametrize("already", [0, 1])
def test_no_extension_after_the_first_month(today: Any, already: int) -> None:
    # given: a request received on 31 January (perhaps extended once already)
    today("2025-02-10")
    request = dsr_create(
        type="access", subject="user_id:42", received_at=datetime(2025, 1, 31, tzinfo=UTC)
    )
    if already:
        request = dsr_extend(request=request, months=1, reason="Complex")
    due = request.due_date
    # when: the first month is over (the extended deadline is not)
    today("2025-03-01")
    with pytest.raises(RequestRefused, match=r"first month after receipt has passed"):
        dsr_extend(request=request, months=1, reason="Late")
    # then: nothing changed
    request = DataSubjectRequest.objects.get(pk=request.pk)
    assert (request.due_date, request.extension_months) == (due, already)
    assert RequestEvent.objects.filter(request=request, action="extended").count() == already

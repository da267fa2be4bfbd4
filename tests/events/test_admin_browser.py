"""The profiles and events change lists in a real browser (headless Chromium through
Playwright, as in tests/consent/test_admin_browser.py): with long names, emails,
ids and event names, neither list is wider than a 1440-pixel window."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

if not os.path.exists("/usr/bin/chromium"):
    pytest.skip(
        "Chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
        allow_module_level=True,
    )

from playwright.sync_api import Page, expect

from apps.events.models import Source
from apps.events.parsing import BatchDefaults
from apps.events.services import event_ingest, events_process
from tests.browser import admin_page

# live_server needs data committed where its thread can see it.
pytestmark = pytest.mark.django_db(transaction=True)

USERNAME = "cdp-admin"
WINDOW = 1440
LONG_NAME = "Maximiliane Alexandra Konstanze von Hohenzollern-Sigmaringen-Wittelsbach"
LONG_EMAIL = "maximiliane.alexandra.konstanze.von.hohenzollern.sigmaringen@example-mail.com"
LONG_USER_ID = "usr_" + "0123456789abcdef" * 4
LONG_EVENT = "Product Added To Wishlist From The Recommendation Carousel On The Home Page"


@pytest.fixture
def page(live_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    """A logged-in admin's page (tests/browser.py)."""
    with admin_page(live_server, monkeypatch, USERNAME, width=WINDOW) as tab:
        yield tab


@pytest.fixture
def long_data(db: None) -> None:
    """People and events with values as long as real ones get, stored the way real
    events are (ingest, then identity resolution)."""
    source = Source.objects.create(name="Mobile app (iOS, production, EU region)")
    events: list[dict[str, Any]] = []
    for i in range(3):
        anonymous_id = f"7f3c2a1e-9b4d-4c8e-a6f0-{i:012d}"
        events.append(
            {
                "type": "identify",
                "userId": f"{LONG_USER_ID}{i}",
                "anonymousId": anonymous_id,
                "traits": {"name": f"{LONG_NAME} {i}", "email": f"{i}.{LONG_EMAIL}"},
            }
        )
        events.append(
            {
                "type": "track",
                "event": LONG_EVENT,
                "userId": f"{LONG_USER_ID}{i}",
                "anonymousId": anonymous_id,
            }
        )
        events.append({"type": "page", "name": LONG_EVENT, "anonymousId": anonymous_id})
    result = event_ingest(
        source=source,
        events=events,
        defaults=BatchDefaults(received_at=timezone.now()),
        path="test",
    )
    assert not result.rejected
    events_process(event_ids=result.stored)


def _widths(page: Page) -> list[int]:
    return list(
        page.evaluate(
            "[document.querySelector('#result_list').getBoundingClientRect().right,"
            " document.querySelector('#result_list').scrollWidth,"
            " document.documentElement.scrollWidth]"
        )
    )


def test_profile_list_fits_a_1440_pixel_window(page: Page, long_data: None) -> None:
    # when
    page.goto("/admin/identity/profile/")

    # then no horizontal scroll, and a cut value keeps its whole self in a title
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    widths = _widths(page)
    assert max(widths) <= WINDOW, widths
    # (the three profiles may share a creation time: any row order)
    titles = page.locator("#result_list tbody td.field-email span[title]").evaluate_all(
        "spans => spans.map(s => s.title)"
    )
    assert sorted(titles) == [f"{i}.{LONG_EMAIL}" for i in range(3)]


def test_event_list_fits_a_1440_pixel_window(page: Page, long_data: None) -> None:
    # when
    page.goto("/admin/events/event/")

    # then
    expect(page.locator("#result_list tbody tr")).to_have_count(9)
    widths = _widths(page)
    assert max(widths) <= WINDOW, widths
    label = page.locator("#result_list tbody td.field-label span[title]").first
    expect(label).to_have_attribute("title", LONG_EVENT)

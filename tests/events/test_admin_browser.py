"""The profiles and events change lists in a real browser (headless Chromium through
Playwright, as in tests/consent/test_admin_browser.py): with long names, emails,
ids and event names, neither list is wider than a 1440-pixel window."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

if not os.path.exists("/usr/bin/chromium"):
    pytest.skip(
        "Chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
        allow_module_level=True,
    )

from playwright.sync_api import Page, expect, sync_playwright

from apps.events.models import Source
from apps.events.parsing import BatchDefaults
from apps.events.services import event_ingest, events_process

# live_server needs data committed where its thread can see it.
pytestmark = pytest.mark.django_db(transaction=True)

USERNAME, PASSWORD = "cdp-admin", "correct-horse-battery"
WINDOW = 1440
LONG_NAME = "Maximiliane Alexandra Konstanze von Hohenzollern-Sigmaringen-Wittelsbach"
LONG_EMAIL = "maximiliane.alexandra.konstanze.von.hohenzollern.sigmaringen@example-mail.com"
LONG_USER_ID = "usr_" + "0123456789abcdef" * 4
LONG_EVENT = "Product Added To Wishlist From The Recommendation Carousel On The Home Page"


@pytest.fixture
def page(live_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    """A logged-in admin's page in a 1440 x 900 window (see the consent browser test
    for DJANGO_ALLOW_ASYNC_UNSAFE: the test and the browser take turns)."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    get_user_model().objects.create_superuser(USERNAME, "admin@example.com", PASSWORD)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        context = browser.new_context(
            base_url=live_server.url, locale="en-US", viewport={"width": WINDOW, "height": 900}
        )
        context.set_default_timeout(10_000)
        tab = context.new_page()
        tab.goto("/admin/login/?next=/admin/")
        tab.fill("#id_username", USERNAME)
        tab.fill("#id_password", PASSWORD)
        tab.click("input[type=submit]")
        expect(tab.locator("#user-tools")).to_contain_text(USERNAME.upper(), ignore_case=True)
        try:
            yield tab
        finally:
            browser.close()


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

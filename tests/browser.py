"""The admin in a real browser: a logged-in superuser's page in headless Chromium
(Playwright, sync API) against pytest-django's live server, for the browser tests
of every app. A test module checks /usr/bin/chromium exists (and skips) before it
imports this.

Playwright's sync API keeps an asyncio event loop registered as running in this
thread while it is open, and Django then refuses ORM calls here
(SynchronousOnlyOperation) although nothing runs concurrently: the test drives the
browser and queries the database strictly in turn, and the live server answers
from its own thread. DJANGO_ALLOW_ASYNC_UNSAFE lifts the check for the test only
(monkeypatch restores the environment afterwards, so the rest of the suite keeps
the guard).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

PASSWORD = "correct-horse-battery"
TIMEOUT_MS = 10_000


@contextmanager
def admin_page(
    live_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    username: str,
    *,
    width: int = 1440,
    on_context: Callable[[BrowserContext], None] | None = None,
) -> Iterator[Page]:
    """``with admin_page(live_server, monkeypatch, "privacy-admin") as tab:`` a
    superuser of that name, logged in, in a ``width`` x 900 window; ``on_context``
    sees the browser context before the first page opens."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    get_user_model().objects.create_superuser(username, "admin@example.com", PASSWORD)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        context = browser.new_context(
            base_url=live_server.url, locale="en-US", viewport={"width": width, "height": 900}
        )
        context.set_default_timeout(TIMEOUT_MS)
        if on_context is not None:
            on_context(context)
        tab = context.new_page()
        tab.goto("/admin/login/?next=/admin/")
        tab.fill("#id_username", username)
        tab.fill("#id_password", PASSWORD)
        tab.click("input[type=submit]")
        expect(tab.locator("#user-tools")).to_contain_text(username.upper(), ignore_case=True)
        try:
            yield tab
        finally:
            context.close()
            browser.close()

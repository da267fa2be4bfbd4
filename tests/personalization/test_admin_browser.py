"""The content mapping page in headless Chromium (Playwright, sync API) against
pytest-django's live server: a marketer picks a variant in the grid, saves, and
the decision API returns it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

if not os.path.exists("/usr/bin/chromium"):
    pytest.skip(
        "Chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
        allow_module_level=True,
    )

from playwright.sync_api import Page, expect, sync_playwright

from apps.identity.models import Profile
from apps.personalization.models import Placement, Rule

from .conftest import variant

# live_server needs data committed where its thread can see it.
pytestmark = pytest.mark.django_db(transaction=True)

USERNAME, PASSWORD = "marketer", "correct-horse-battery"
TIMEOUT_MS = 10_000


@pytest.fixture
def page(live_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    """A logged-in admin's page (DJANGO_ALLOW_ASYNC_UNSAFE: see
    tests/consent/test_admin_browser.py, whose fixture this follows)."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    get_user_model().objects.create_superuser(USERNAME, "m@example.com", PASSWORD)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        context = browser.new_context(
            base_url=live_server.url, locale="en-US", viewport={"width": 1440, "height": 900}
        )
        context.set_default_timeout(TIMEOUT_MS)
        tab = context.new_page()
        tab.goto("/admin/login/?next=/admin/")
        tab.fill("#id_username", USERNAME)
        tab.fill("#id_password", PASSWORD)
        tab.click("input[type=submit]")
        expect(tab.locator("#user-tools")).to_contain_text(USERNAME.upper(), ignore_case=True)
        try:
            yield tab
        finally:
            context.close()
            browser.close()


def test_assign_in_the_grid_and_decide(
    page: Page, reader: Client, hero: Placement, make_segment: Any, make_profile: Any
) -> None:
    # given ada in the vip segment, and no rule yet
    ada: Profile = make_profile(("user_id", "ada"))
    vip = make_segment("vip", members=[ada])

    def decided() -> Any:
        r = reader.post(
            "/api/v1/decide",
            {"profile": "user_id:ada", "placements": ["home_hero"]},
            content_type="application/json",
        )
        return r.json()["decisions"]["home_hero"]

    assert decided()["variant"] == "hero-default"
    # when the marketer opens the mapping from the placements list, picks hero-vip
    # for vip x home_hero and saves
    page.goto("/admin/personalization/placement/")
    page.get_by_role("link", name="Content mapping").click()
    expect(page.locator("h1")).to_have_text("Content mapping")
    cell = page.locator(f"select[name='cell-{vip.id}-{hero.id}']")
    cell.select_option(label="hero-vip (hero-vip)")
    page.click("#perso-save")
    expect(page.locator(".messagelist")).to_contain_text("1 cell(s) saved.")
    # then the grid shows the rule, and the decision API returns the variant
    expect(page.locator(f"select[name='cell-{vip.id}-{hero.id}']")).to_have_value(
        str(variant("hero-vip").id)
    )
    rule = Rule.objects.get()
    got = decided()
    assert got == {
        "variant": "hero-vip",
        "payload": {"headline": "Hello, VIP"},
        "holdout": False,
        "reason": {"rule": rule.id, "segment": "vip"},
    }
    # and "what does this profile see" says the same, with the reason
    page.fill("#perso-lookup input[name=profile]", "user_id:ada")
    page.click("#perso-lookup input[type=submit]")
    expect(page.locator("#perso-lookup-result")).to_contain_text(f"rule {rule.id} (segment vip)")
    # and coverage counts her for hero-vip
    expect(page.locator("#perso-coverage")).to_contain_text("hero-vip")

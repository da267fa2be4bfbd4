"""The content mapping page in headless Chromium (Playwright, sync API) against
pytest-django's live server: a marketer picks a variant in the grid, saves, and
the decision API returns it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

if not os.path.exists("/usr/bin/chromium"):
    pytest.skip(
        "Chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
        allow_module_level=True,
    )

from playwright.sync_api import Page, expect

from apps.identity.models import Profile
from apps.personalization.models import Placement, Rule
from tests.browser import admin_page

from .conftest import variant

# live_server needs data committed where its thread can see it.
pytestmark = pytest.mark.django_db(transaction=True)

USERNAME = "marketer"


@pytest.fixture
def page(live_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    """A logged-in admin's page (tests/browser.py)."""
    with admin_page(live_server, monkeypatch, USERNAME) as tab:
        yield tab


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

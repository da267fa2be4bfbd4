from __future__ import annotations

from typing import Any

import pytest

from apps.consent.models import CategoryMapping, LegalBasis, Purpose
from apps.consent.selectors import consent_config_clear
from apps.identity.services import IdentityClaim, profiles_resolve


@pytest.fixture(autouse=True)
def _fresh_consent_config() -> Any:
    consent_config_clear()
    yield
    consent_config_clear()


@pytest.fixture(autouse=True)
def _consent_log_emptied_before_flush(request: pytest.FixtureRequest) -> Any:
    """Transactional tests end with a TRUNCATE of every table, which the consent
    log refuses while it holds statements (migration 0004): empty it first, as
    the table's owner may, with its guard off for that one transaction."""
    marker = request.node.get_closest_marker("django_db")
    if not marker or not (marker.kwargs.get("transaction") or "transaction" in marker.args):
        yield
        return
    request.getfixturevalue("_django_db_helper")  # so that this ends before the flush
    yield
    from django.db import connection, transaction

    if connection.vendor != "postgresql":
        return
    with transaction.atomic(), connection.cursor() as cursor:
        # Foreign keys are checked at commit; ALTER TABLE wants none pending.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE consent_consentrecord DISABLE TRIGGER consent_log_append_only")
        cursor.execute("DELETE FROM consent_consentstate")
        cursor.execute("DELETE FROM consent_consentrecord")
        cursor.execute("ALTER TABLE consent_consentrecord ENABLE TRIGGER consent_log_append_only")


@pytest.fixture
def make_purpose(db: None) -> Any:
    def make(key: str, **fields: Any) -> Purpose:
        categories = fields.pop("categories", [])
        purpose = Purpose.objects.create(key=key, name=fields.pop("name", key.title()), **fields)
        for category in categories:
            CategoryMapping.objects.create(category=category, purpose=purpose)
        consent_config_clear()
        return purpose

    return make


@pytest.fixture
def storage_purpose(make_purpose: Any) -> Purpose:
    return make_purpose(
        "analytics",
        gates_storage=True,
        storage_policy="drop",
        legal_basis=LegalBasis.CONSENT,
        default_granted=False,
        categories=["Analytics"],
        notice_version="v3",
        notice_text="We measure how you use the site.",
    )


@pytest.fixture
def make_profile(db: None) -> Any:
    from django.utils import timezone

    def make(*identifiers: tuple[str, str]) -> Any:
        from apps.identity.models import Profile

        profile_id = profiles_resolve(
            claims=[IdentityClaim(identifiers=list(identifiers), timestamp=timezone.now())]
        )[0]
        return Profile.objects.get(pk=profile_id)

    return make


@pytest.fixture
def admin_api(db: None) -> Any:
    """An API client whose token has every CDP permission (the full-access group)."""
    from django.test import Client

    from apps.api_auth.services import api_token_create, service_user_ensure

    user = service_user_ensure(name="privacy-admin", read_only=False)
    _, raw = api_token_create(name="privacy-admin", user=user)
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")

from __future__ import annotations

from typing import Any

import pytest

from apps.consent.models import LegalBasis, Purpose
from apps.consent.selectors import consent_config_clear
from apps.identity.models import Profile
from apps.identity.selectors import profile_get_by_external_id
from tests.consent.factories import PurposeFactory


@pytest.fixture(autouse=True)
def _fresh_consent_config() -> Any:
    consent_config_clear()
    yield
    consent_config_clear()


@pytest.fixture
def make_purpose(db: None) -> Any:
    def make(key: str, **fields: Any) -> Purpose:
        return PurposeFactory(key=key, **fields)

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
def admin_api(db: None) -> Any:
    """An API client whose token has every CDP permission (the full-access group)."""
    from django.test import Client

    from apps.api_auth.services import api_token_create, service_user_ensure

    user = service_user_ensure(name="privacy-admin", read_only=False)
    _, raw = api_token_create(name="privacy-admin", user=user)
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


@pytest.fixture
def ivy(post_events: Any) -> Profile:
    """A person known by a user id and an email, from an identify call (erasure tests)."""
    identify = {"userId": "ivy-1", "traits": {"email": "ivy@example.com"}, "messageId": "i1"}
    assert post_events("/v1/identify", identify).status_code == 200
    profile = profile_get_by_external_id(external_id="user_id:ivy-1")
    assert profile is not None
    return profile

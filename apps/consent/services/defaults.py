"""A starting set of purposes, for the demo and for new installs that want one."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.consent.models import CategoryMapping, LegalBasis, Purpose, StoragePolicy
from apps.consent.selectors import consent_config_clear

DEFAULT_PURPOSES: list[dict[str, Any]] = [
    {
        "key": "analytics",
        "name": "Analytics",
        "description": "Recording how the site and app are used, to improve them.",
        "legal_basis": LegalBasis.LEGITIMATE_INTEREST,
        "default_granted": True,
        "gates_storage": True,
        "storage_policy": StoragePolicy.ANONYMIZE,
        "notice_version": "2026-01",
        "notice_text": "We record how you use our site to improve it. You can object.",
        "categories": ["Analytics", "C0002"],
    },
    {
        "key": "personalization",
        "name": "Personalized content",
        "description": "Choosing content and offers from what you did.",
        "legal_basis": LegalBasis.CONSENT,
        "gates_personalization": True,
        "expiry_days": 395,
        "notice_version": "2026-01",
        "notice_text": "We tailor what you see to what you browsed and bought.",
        "categories": ["Functional", "C0003"],
    },
    {
        "key": "advertising",
        "name": "Advertising audiences",
        "description": "Sharing audiences with advertising and personalization tools.",
        "legal_basis": LegalBasis.CONSENT,
        "expiry_days": 395,
        "gated_destinations": ["optimizely", "adobe_target", "dynamic_yield", "webhook"],
        "gpc_opt_out": True,
        "notice_version": "2026-01",
        "notice_text": "We share audiences with the tools that show you offers.",
        "categories": ["Advertising", "C0004"],
    },
]


@transaction.atomic
def purposes_default_ensure() -> int:
    """Create the default purposes that do not exist yet; returns how many."""
    created = 0
    for spec in DEFAULT_PURPOSES:
        fields = dict(spec)
        categories = fields.pop("categories")
        purpose, was_created = Purpose.objects.get_or_create(key=fields.pop("key"), defaults=fields)
        created += was_created
        for category in categories:
            CategoryMapping.objects.get_or_create(category=category, defaults={"purpose": purpose})
    consent_config_clear()
    return created

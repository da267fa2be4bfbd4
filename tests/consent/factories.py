from __future__ import annotations

from typing import Any

import factory

from apps.consent.models import CategoryMapping, Purpose
from apps.consent.selectors import consent_config_clear


class PurposeFactory(factory.django.DjangoModelFactory):
    """``categories=["Analytics", ...]`` maps consent-manager categories to it."""

    class Meta:
        model = Purpose
        skip_postgeneration_save = True

    key = factory.Sequence(lambda n: f"purpose-{n}")
    name = factory.LazyAttribute(lambda purpose: purpose.key.title())

    @factory.post_generation
    def categories(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        for category in extracted or ():
            CategoryMapping.objects.create(category=category, purpose=self)
        consent_config_clear()  # the cached consent configuration is stale now

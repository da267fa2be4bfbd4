"""Profiles and identifiers for tests, built as identity resolution stores them."""

from __future__ import annotations

from typing import Any

import factory

from apps.identity.models import Identifier, IdentifierType, Profile


def _normalized(identifier: Any) -> str:
    from apps.identity.services import identity_rules_load

    value = identity_rules_load().normalize(identifier.type, identifier.raw_value)
    assert value is not None, f"not a usable {identifier.type}: {identifier.raw_value!r}"
    return value


class IdentifierFactory(factory.django.DjangoModelFactory):
    """``value`` is ``raw_value`` normalized by the identity rules in force."""

    class Meta:
        model = Identifier

    profile = factory.SubFactory("tests.identity.factories.ProfileFactory")
    type = IdentifierType.USER_ID
    raw_value = factory.Sequence(lambda n: f"user-{n}")
    value = factory.LazyAttribute(_normalized)


class ProfileFactory(factory.django.DjangoModelFactory):
    """``identifiers=[(type, raw value), ...]`` gives the profile those identifiers."""

    class Meta:
        model = Profile
        skip_postgeneration_save = True

    traits = factory.LazyFunction(dict)

    @factory.post_generation
    def identifiers(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        for kind, raw in extracted or ():
            IdentifierFactory(profile=self, type=kind, raw_value=raw)

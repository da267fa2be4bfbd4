"""Migration 0007: manual address weights keep their meaning with the new level."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps as django_apps

from apps.identity.dedup.compare import LEVELS, Comparator
from apps.identity.dedup.models import DedupConfig
from apps.identity.dedup.services import dedup_config_ensure

migration = importlib.import_module("apps.identity.migrations.0007_dedup_address_levels")


@pytest.mark.django_db
def test_four_level_address_settings_get_the_new_level_with_the_area_weight() -> None:
    # given: an address field configured before the new level
    dedup_config_ensure()
    fields = DedupConfig.objects.get().fields
    fields.filter(name="address").update(
        weights=[-4, 2, 6, 9], m_probabilities=[0.2, 0.1, 0.1, 0.6],
        u_probabilities=[0.9, 0.08, 0.01, 0.01],
    )  # fmt: skip

    # when
    migration.split_area_level(django_apps, None)

    # then: "same street there" weighs what "same city or postal code" did
    address = fields.get(name="address")
    assert len(LEVELS[Comparator.ADDRESS]) == 5
    assert address.weights == [-4, 2, 2, 6, 9]
    assert address.m_probabilities == [0.2, 0.05, 0.05, 0.1, 0.6]
    assert address.u_probabilities == [0.9, 0.04, 0.04, 0.01, 0.01]
    address.full_clean()

    # and back
    migration.join_area_level(django_apps, None)
    address.refresh_from_db()
    assert address.weights == [-4, 2, 6, 9]
    assert address.m_probabilities == [0.2, 0.1, 0.1, 0.6]

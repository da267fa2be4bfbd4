from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from apps.clustering.models import ClusteringConfig
from apps.clustering.services import config_save

from .archetypes import FEATURES


@pytest.fixture
def make_config(db: None) -> Callable[..., ClusteringConfig]:
    """``make_config(key="shoppers", algorithm="kmeans", ...)``: a saved config
    over the archetype features unless told otherwise."""

    def make(key: str = "shoppers", **values: Any) -> ClusteringConfig:
        values.setdefault("features", FEATURES)
        values.setdefault("name", key.title())
        values.setdefault("k_min", 2)
        values.setdefault("k_max", 8)
        values.setdefault("schedule", "")
        return config_save(config=ClusteringConfig(key=key, **values))

    return make

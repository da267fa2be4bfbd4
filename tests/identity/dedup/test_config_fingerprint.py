"""The configuration fingerprint: a change that finds or weighs pairs otherwise
forces the next run to be full."""

from __future__ import annotations

import pytest

from apps.identity.dedup import blocking
from apps.identity.dedup.compare import DEFAULT_M, Comparator
from apps.identity.dedup.records import BUILTIN_FIELDS
from apps.identity.dedup.services import config
from apps.identity.dedup.services.config import DedupSettings


def settings() -> DedupSettings:
    return DedupSettings(
        auto_merge_probability=0.99,
        review_probability=0.5,
        estimate_weights=True,
        max_block_size=500,
        specs=BUILTIN_FIELDS,
    )


def test_another_blocking_pass_changes_the_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    before = settings().fingerprint()
    monkeypatch.setattr(config, "BUILTIN_PASSES", blocking.BUILTIN_PASSES[:-1])
    assert settings().fingerprint() != before


def test_other_default_probabilities_change_the_fingerprint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = settings().fingerprint()
    monkeypatch.setitem(DEFAULT_M, Comparator.NAME, (0.1, 0.1, 0.1, 0.7))
    assert settings().fingerprint() != before


def test_another_model_version_changes_the_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    before = settings().fingerprint()
    monkeypatch.setattr(config, "MODEL_VERSION", config.MODEL_VERSION + 1)
    assert settings().fingerprint() != before
    assert settings().fingerprint() == settings().fingerprint()

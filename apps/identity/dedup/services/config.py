"""The dedup configuration in force for a run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

from ..blocking import BUILTIN_PASSES
from ..compare import DEFAULT_M, DEFAULT_U, LEVELS
from ..models import DedupConfig, DedupField
from ..records import BUILTIN_FIELDS, FieldSpec

# Raise when what a saved model means changes in a way the settings do not show
# (how the prior, the veto weight or a level is fitted or read): incremental runs
# after it are forced full. 2: lambda saved unrounded, the veto weight saved. 3:
# regions normalized and compared as whole values (their blocking keys too).
MODEL_VERSION = 3

# (stage, done, total): called as a run goes; the dedupe command draws progress bars.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DedupSettings:
    auto_merge_probability: float
    review_probability: float
    estimate_weights: bool
    max_block_size: int
    specs: tuple[FieldSpec, ...]

    def fingerprint(self) -> str:
        """Changes whenever a run with this configuration could find other pairs."""
        # The comparators' levels too: a model saved with other levels is stale.
        # The blocking passes and default m and u as well: another pass finds other
        # pairs, other defaults give other weights.
        comparators = sorted({spec.comparator for spec in self.specs})
        code = {
            "levels": {c: LEVELS[c] for c in comparators},
            "default_m": {c: DEFAULT_M[c] for c in comparators},
            "default_u": {c: DEFAULT_U[c] for c in comparators},
            "passes": [p.name for p in BUILTIN_PASSES],
            "model_version": MODEL_VERSION,
        }
        data = json.dumps({**asdict(self), **code}, sort_keys=True, default=str)
        return hashlib.sha256(data.encode()).hexdigest()


def dedup_config_ensure() -> DedupConfig:
    """The configuration row, with the built-in fields on first use."""
    config, _ = DedupConfig.objects.get_or_create(pk=DedupConfig.SINGLETON_ID)
    if not DedupField.objects.filter(config=config).exists():
        DedupField.objects.bulk_create(
            [
                DedupField(
                    config=config,
                    name=spec.name,
                    trait=spec.trait,
                    comparator=spec.comparator,
                    frequency_adjusted=spec.frequency_adjusted,
                    position=(i + 1) * 10,
                )
                for i, spec in enumerate(BUILTIN_FIELDS)
            ],
            ignore_conflicts=True,
        )
    return config


def dedup_settings_load() -> DedupSettings:
    config = dedup_config_ensure()
    specs = tuple(
        FieldSpec(
            name=f.name,
            trait=f.trait,
            comparator=f.comparator,
            blocking=f.blocking,
            m=tuple(f.m_probabilities) if f.m_probabilities is not None else None,
            u=tuple(f.u_probabilities) if f.u_probabilities is not None else None,
            weights=tuple(f.weights) if f.weights is not None else None,
            frequency_adjusted=f.frequency_adjusted,
        )
        for f in DedupField.objects.filter(config=config, enabled=True).order_by("position", "name")
        if f.comparator in LEVELS
    )
    return DedupSettings(
        auto_merge_probability=config.auto_merge_probability,
        review_probability=config.review_probability,
        estimate_weights=config.estimate_weights,
        max_block_size=config.max_block_size,
        specs=specs,
    )

"""Probabilistic deduplication: runs, candidate pairs and the review decisions.

- ``run``: a full or incremental run, from loading profiles to its record;
- ``scoring``: comparison of candidate pairs, EM estimation and the vetoes;
- ``candidates``: candidate rows (evidence, storage) and remembered decisions;
- ``decisions``: automatic merges and an admin's merge or "not the same person";
- ``index``: the blocking index incremental runs use;
- ``config``: the configuration in force.
"""

from .config import DedupSettings, Progress, dedup_config_ensure, dedup_settings_load
from .decisions import duplicate_candidate_merge, duplicate_candidate_reject
from .run import dedup_run
from .scoring import vetoes

__all__ = [
    "DedupSettings",
    "Progress",
    "dedup_config_ensure",
    "dedup_run",
    "dedup_settings_load",
    "duplicate_candidate_merge",
    "duplicate_candidate_reject",
    "vetoes",
]

"""Term frequencies: agreeing on a rare value says more than agreeing on a common one.

Two profiles that are both "Severin Ullrich" are far more likely one person than two
that are both "John Smith". Fellegi-Sunter's u for exact agreement is an average over
all values; for the value v itself it is about p_v, the share of profiles with v
(given one profile has v, a random other one has it with probability p_v). The
exact-agreement weight log2(m / u) therefore moves by log2(u / p_v): up for rare
values, down for common ones (Winkler's frequency-based matching; Splink's term
frequency adjustments). Only exact agreement is adjusted, and only on fields an
admin marked ``frequency_adjusted`` (the first and last names by default).

Frequencies come from the profiles of a full run and are kept (``DedupValueFrequency``)
for the incremental runs until the next full one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .compare import IndexArray, LevelArray
from .fellegi_sunter import EPS, Model
from .records import Records

# Below this many profiles with a value, shares are too noisy to say which values are
# rare: no adjustment.
MIN_PROFILES = 1_000
# A value two profiles share occurs at least twice: the share never goes below 2/n.
MIN_COUNT = 2
# Values stored for incremental runs: rarer ones are counted as MIN_COUNT anyway.
STORED_MIN_COUNT = MIN_COUNT + 1
# No value moves a field's weight further than this either way.
MAX_ADJUSTMENT = 10.0

FloatArray = npt.NDArray[np.float64]


@dataclass
class ValueFrequencies:
    """How many profiles have a value of one field, and how many have each value
    (values rarer than ``STORED_MIN_COUNT`` may be left out)."""

    profiles: int
    counts: dict[str, int] = field(default_factory=dict)
    # The most common values and their counts (shown in the run's parameters).
    most_common: list[tuple[str, int]] = field(default_factory=list)

    def shares(self, values: npt.NDArray[np.object_]) -> FloatArray:
        counts = np.fromiter(
            (self.counts.get(v, 0) for v in values.tolist()), dtype=np.float64, count=len(values)
        )
        return np.maximum(counts, MIN_COUNT) / max(self.profiles, 1)

    def summary(self) -> dict[str, object]:
        return {"profiles": self.profiles, "most_common": [list(kv) for kv in self.most_common]}


def frequencies_count(records: Records, fields: list[str]) -> dict[str, ValueFrequencies]:
    """The frequencies of ``fields`` among ``records`` (normalized values)."""
    out = {}
    for name in fields:
        column = records.columns.get(name)
        if column is None:
            continue
        counts = Counter(v for v in column.tolist() if v)
        common = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        out[name] = ValueFrequencies(sum(counts.values()), dict(counts), common)
    return out


def frequency_adjustments(
    records: Records,
    left: IndexArray,
    right: IndexArray,
    level: LevelArray,
    swapped: npt.NDArray[np.bool_],
    model: Model,
    frequencies: dict[str, ValueFrequencies],
) -> FloatArray:
    """(pairs x fields) changes to the field weights of ``model.field_weights(level)``:
    log2(u_exact / p_v) where the pair agrees exactly on a frequency-adjusted field
    with value v; 0 elsewhere. Crossed names (``swapped``) are not adjusted: their
    value is a first name on one side and a last name on the other."""
    adjustments = np.zeros((len(left), len(model.fields)))
    for k, parameters in enumerate(model.fields):
        table = frequencies.get(parameters.name)
        if table is None or table.profiles < MIN_PROFILES or parameters.source == "weights":
            continue
        exact = (level[:, k] == parameters.levels - 1) & ~swapped
        if not exact.any():
            continue
        values = records.columns[parameters.name][left[exact]]
        u_exact = max(float(parameters.u[-1]), EPS)
        change = np.log2(u_exact / table.shares(values))
        adjustments[exact, k] = np.clip(change, -MAX_ADJUSTMENT, MAX_ADJUSTMENT)
    return adjustments

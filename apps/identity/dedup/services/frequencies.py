"""The value frequencies of frequency-adjusted fields (``DedupValueFrequency``): counted
by full runs, read back by incremental ones."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from ..frequency import STORED_MIN_COUNT, ValueFrequencies, frequencies_count
from ..models import DedupValueFrequency
from ..records import FieldSpec, Records
from .candidates import chunks


def _adjusted(specs: tuple[FieldSpec, ...]) -> list[str]:
    return [s.name for s in specs if s.frequency_adjusted and s.weights is None]


def frequencies_rebuild(
    records: Records, specs: tuple[FieldSpec, ...]
) -> dict[str, ValueFrequencies]:
    """Count the values of every live profile (a full run's records) and keep the
    counts for the incremental runs that follow."""
    frequencies = frequencies_count(records, _adjusted(specs))
    rows = [
        DedupValueFrequency(field=name, value=value, count=count)
        for name, table in frequencies.items()
        for value, count in table.counts.items()
        if count >= STORED_MIN_COUNT
    ]
    with transaction.atomic():
        DedupValueFrequency.objects.all().delete()
        DedupValueFrequency.objects.bulk_create(rows, batch_size=2000)
    return frequencies


def frequencies_load(
    records: Records, specs: tuple[FieldSpec, ...], saved: dict[str, Any]
) -> dict[str, ValueFrequencies]:
    """The counts kept by the last full run, for the values of ``records``; ``saved``
    is that run's summary (``ValueFrequencies.summary``, by field)."""
    frequencies = {}
    for name in _adjusted(specs):
        column = records.columns.get(name)
        if column is None or name not in saved:
            continue
        counts: dict[str, int] = {}
        values = sorted({v for v in column.tolist() if v})
        for chunk in chunks(values, 5000):
            counts.update(
                DedupValueFrequency.objects.filter(field=name, value__in=chunk).values_list(
                    "value", "count"
                )
            )
        common = [(str(v), int(c)) for v, c in saved[name].get("most_common", [])]
        frequencies[name] = ValueFrequencies(int(saved[name]["profiles"]), counts, common)
    return frequencies

"""The blocking index (DedupBlockKey): each live profile's blocking keys, so that an
incremental run finds the neighbours of changed profiles."""

from __future__ import annotations

import numpy as np
from django.db import connection, transaction

from ..blocking import BlockKeys
from ..models import DedupBlockKey
from ..records import Records


def index_rebuild(records: Records, keys: BlockKeys) -> None:
    table = DedupBlockKey._meta.db_table
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"TRUNCATE {connection.ops.quote_name(table)}")
        else:
            DedupBlockKey.objects.all().delete()
        _index_write(records, keys, np.ones(len(records), dtype=bool))


def index_insert(records: Records, keys: BlockKeys, rows: np.ndarray) -> None:
    with transaction.atomic():
        _index_write(records, keys, rows)


def _index_write(records: Records, keys: BlockKeys, rows: np.ndarray) -> None:
    wanted = rows[keys.rows]
    # (key, row), sorted by key: the primary key index then fills in order.
    pairs = np.unique(np.stack([keys.keys[wanted], keys.rows[wanted]], axis=1), axis=0)
    ids = records.ids
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(DedupBlockKey._meta.db_table)
        text_ids = [str(pid) for pid in ids]
        with connection.cursor() as cursor:
            raw = cursor.cursor  # psycopg 3: COPY, in text, is far faster than INSERTs
            with raw.copy(f"COPY {table} (profile_id, key) FROM STDIN") as copy:
                for start in range(0, len(pairs), 100_000):
                    chunk = pairs[start : start + 100_000].tolist()
                    copy.write("".join(f"{text_ids[row]}\t{key}\n" for key, row in chunk))
        return
    DedupBlockKey.objects.bulk_create(
        (DedupBlockKey(profile_id=ids[row], key=key) for key, row in pairs.tolist()),
        batch_size=2000,
    )

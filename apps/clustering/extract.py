"""The feature matrix, straight from the database into numpy.

One query over ``segments_profilefeatures`` (a row per live profile with
behaviour: merged-away profiles lose theirs in the merge's own transaction, so
no join on profiles is needed). On PostgreSQL it runs as a binary ``COPY``
whose rows are all fixed-size (a uuid, float8s and an int8), read with one
``np.frombuffer``: no Python object per profile. On SQLite (the embedded
default) the same columns come through the cursor.

Derived features are computed in SQL from the stored columns, as
``features_public`` defines them. Missing values, and how they are filled:

- ``average_order_value`` and ``average_session_seconds`` with no order or no
  session: 0 (nothing spent per order, no time per session);
- ``days_since_last_order`` with no order: the days since the profile was first
  seen (it has gone that long without ordering, as far as we know);
- anything still missing (rfm scores of a profile with no order, a profile never
  seen): NaN here, filled with the population's median by the transform, and a
  feature missing for everyone is left out of the run with a note
  (apps/clustering/fitting.py).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.db import connection

from apps.segments.written import UUID_DTYPE

_DAYS_PG = "EXTRACT(EPOCH FROM (%(now)s - {col})) / 86400.0"
_DAYS_SQLITE = "(julianday(%(now)s) - julianday({col}))"


def _direct(column: str) -> tuple[str, str]:
    return (f"pf.{column}", f"pf.{column}")


def _expressions(days: str) -> dict[str, str]:
    last = days.format(col="pf.last_order_at")
    first = days.format(col="pf.first_seen_at")
    return {
        "orders_count": "pf.orders_count",
        "revenue_total": "pf.revenue_total",
        "average_order_value": ("COALESCE(pf.revenue_total / NULLIF(pf.orders_count, 0), 0)"),
        "days_since_last_order": f"COALESCE({last}, {first})",
        "active_days": "pf.active_days",
        "sessions_count": "pf.sessions_count",
        "average_session_seconds": (
            "COALESCE(pf.session_seconds_total * 1.0 / NULLIF(pf.sessions_count, 0), 0)"
        ),
        "page_views": "pf.page_views",
        "product_views": "pf.product_views",
        "cart_adds": "pf.cart_adds",
        "email_opens": "pf.email_opens",
        "email_clicks": "pf.email_clicks",
        "rfm_recency": "pf.rfm_recency",
        "rfm_frequency": "pf.rfm_frequency",
        "rfm_monetary": "pf.rfm_monetary",
    }


# The public features one may cluster on (numbers; dates, devices, countries
# and categories are not).
CLUSTERABLE = tuple(_expressions(_DAYS_PG))


@dataclass
class Extracted:
    """The population: ``profile_ids`` (16-byte UUIDs), ``matrix`` (one column
    per requested feature, NaN where missing) and ``previous`` (the segment id of
    the cluster each profile is in now among ``previous_segments``, 0: none)."""

    profile_ids: np.ndarray
    matrix: np.ndarray
    previous: np.ndarray

    def __len__(self) -> int:
        return len(self.profile_ids)


def _query(
    features: Sequence[str],
    *,
    postgres: bool,
    population_segment_id: int | None,
    previous_segments: Sequence[int],
    profile_ids: Sequence[uuid.UUID] | None,
    id_range: tuple[uuid.UUID, uuid.UUID] | None = None,
) -> tuple[str, dict[str, object]]:
    exprs = _expressions(_DAYS_PG if postgres else _DAYS_SQLITE)
    unknown = [f for f in features if f not in exprs]
    if unknown:
        raise ValueError(f"not clusterable features: {unknown}")
    cast = "float8" if postgres else "REAL"
    columns = [
        f"COALESCE(CAST({exprs[f]} AS {cast}), 'NaN'::float8)"
        if postgres
        else f"CAST({exprs[f]} AS REAL)"
        for f in features
    ]
    params: dict[str, object] = {}
    # Which profiles: every condition on pf.profile_id is repeated on the
    # membership tables too (PostgreSQL carries no range across a join), so a
    # chunk reads only its own range of the population and previous clusters.
    within: list[str] = []
    if profile_ids is not None:
        if postgres:
            within.append("{col} = ANY(%(ids)s)")
            params["ids"] = list(profile_ids)
        else:
            names = []
            for i, pid in enumerate(profile_ids):
                params[f"p{i}"] = pid.hex
                names.append(f"%(p{i})s")
            within.append(f"{{col}} IN ({', '.join(names) or 'NULL'})")
    if id_range is not None:
        within.append("{col} >= %(lo)s AND {col} <= %(hi)s")
        lo, hi = id_range
        params["lo"], params["hi"] = (lo, hi) if postgres else (lo.hex, hi.hex)

    def only(col: str) -> str:
        return "".join(f" AND {w.format(col=col)}" for w in within)

    joins = ""
    if population_segment_id is not None:
        joins += (
            " JOIN segments_membership pm ON pm.profile_id = pf.profile_id"
            " AND pm.segment_id = %(population)s AND pm.exited_at IS NULL" + only("pm.profile_id")
        )
        params["population"] = population_segment_id
    if previous_segments:
        ids = ", ".join(str(int(s)) for s in previous_segments)
        joins += (
            " LEFT JOIN (SELECT profile_id, MIN(segment_id) AS sid FROM segments_membership"
            f" WHERE exited_at IS NULL AND segment_id IN ({ids}){only('profile_id')}"
            " GROUP BY profile_id) cm ON cm.profile_id = pf.profile_id"
        )
        previous = "CAST(COALESCE(cm.sid, 0) AS bigint)"
    else:
        previous = "CAST(0 AS bigint)"
    where = [w.format(col="pf.profile_id") for w in within]
    sql = (
        f"SELECT pf.profile_id, {previous}, {', '.join(columns) if columns else '0'}"
        f" FROM segments_profilefeatures pf{joins}"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY pf.profile_id"
    )
    return sql, params


def _from_copy(data: bytes, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Binary COPY: an 11-byte signature, flags, an extension area, then rows of
    # (field count, then length + bytes per field), and a -1 trailer.
    (extension,) = struct.unpack(">i", data[15:19])
    body = data[19 + extension : -2]
    fields = [("n", ">i2"), ("l_id", ">i4"), ("id", "V16"), ("l_prev", ">i4"), ("prev", ">i8")]
    for i in range(width):
        fields += [(f"l{i}", ">i4"), (f"f{i}", ">f8")]
    row = np.dtype(fields)
    if len(body) % row.itemsize:
        raise ValueError("the feature rows are not of the expected shape")
    rows = np.frombuffer(body, dtype=row)
    matrix = np.empty((len(rows), width), dtype=np.float64)
    for i in range(width):
        matrix[:, i] = rows[f"f{i}"]
    return rows["id"].copy(), matrix, rows["prev"].astype(np.int64)


def features_extract(
    features: Sequence[str],
    *,
    now: datetime,
    population_segment_id: int | None = None,
    previous_segments: Sequence[int] = (),
    profile_ids: Sequence[uuid.UUID] | None = None,
    id_range: tuple[uuid.UUID, uuid.UUID] | None = None,
) -> Extracted:
    """The population's feature matrix (or these profiles' rows of it, or the
    rows of profile ids from ``id_range[0]`` to ``id_range[1]`` inclusive), in
    profile id order."""
    postgres = connection.vendor == "postgresql"
    sql, params = _query(
        features,
        postgres=postgres,
        population_segment_id=population_segment_id,
        previous_segments=previous_segments,
        profile_ids=profile_ids,
        id_range=id_range,
    )
    params["now"] = now if postgres else connection.ops.adapt_datetimefield_value(now)
    width = max(len(features), 1)
    with connection.cursor() as cursor:
        if postgres:
            raw = cursor.cursor  # psycopg's own: its COPY reads the rows as bytes
            with raw.copy(f"COPY ({sql}) TO STDOUT (FORMAT BINARY)", params) as copy:
                data = b"".join(bytes(block) for block in copy)
            ids, matrix, previous = _from_copy(data, width)
        else:
            cursor.execute(sql, params)  # type: ignore[arg-type]
            fetched = cursor.fetchall()
            ids = np.array([uuid.UUID(str(r[0])).bytes for r in fetched], dtype="S16").view(
                UUID_DTYPE
            )
            previous = np.array([r[1] for r in fetched], dtype=np.int64)
            matrix = np.array([r[2:] for r in fetched], dtype=np.float64).reshape(
                len(fetched), width
            )
    if not features:
        matrix = matrix[:, :0]
    ids = ids.reshape(-1) if len(ids) else np.empty(0, dtype=UUID_DTYPE)
    return Extracted(profile_ids=ids, matrix=matrix, previous=previous)

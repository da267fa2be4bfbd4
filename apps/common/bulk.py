"""Inserting, updating and upserting many rows at once, fast on PostgreSQL.

Django 5.2's ``bulk_create`` on PostgreSQL sends each column as an array
(``UNNEST``); psycopg escapes every element of an array with a regular expression,
which for JSON columns (every quote escaped) costs seconds per thousand rows of
merge records or candidate evidence. Here the rows travel as one JSON document
(``jsonb_to_recordset``): one string for psycopg to quote, parsed by the server.
Other databases use the ORM.

Used by identity (merge records, dedup candidates) and segments (feature rows a
merge recomputes: with ``bulk_create(update_conflicts=True)`` and
``dataclasses.asdict`` the upsert of a dedup run's 37,000 feature rows was a sixth
of its merge stage, CRM 100k through /v1/batch, cProfile).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import orjson
from django.db import connection, models


def _q(field: models.Field[Any, Any]) -> str:
    return connection.ops.quote_name(str(field.column))


def _columns(fields: Sequence[models.Field[Any, Any]]) -> str:
    return ", ".join(f"{_q(f)} {f.db_type(connection)}" for f in fields)


def _document(objs: Sequence[models.Model], fields: Sequence[models.Field[Any, Any]]) -> str | None:
    """The rows as a JSON array of objects (JSON columns as JSON, not strings), or
    None when a value has no JSON form here (an integer beyond 64 bits)."""
    rows = [{f.column: f.get_prep_value(getattr(obj, f.attname)) for f in fields} for obj in objs]
    try:
        return orjson.dumps(rows, default=_decimal).decode()
    except TypeError:
        return None


def _decimal(value: Any) -> str:
    # A decimal travels as its text, which numeric's input reads exactly.
    if isinstance(value, Decimal) and value.is_finite():
        return str(value)
    raise TypeError


def bulk_insert(objs: Sequence[models.Model]) -> None:
    """INSERT ``objs`` (all of one model, with an auto primary key) and set their pks."""
    if not objs:
        return
    model = type(objs[0])
    pk = model._meta.pk
    assert pk is not None
    fields = [f for f in model._meta.concrete_fields if f is not pk]
    for obj in objs:
        for f in fields:
            f.pre_save(obj, add=True)  # auto_now_add and the like
    document = _document(objs, fields) if connection.vendor == "postgresql" else None
    if document is None:
        model._default_manager.bulk_create(objs, batch_size=1000)
        return
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(_q(f) for f in fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({names}) SELECT {names} "
            f"FROM jsonb_to_recordset(%s::jsonb) AS r({_columns(fields)}) "
            f"RETURNING {_q(pk)}",
            [document],
        )
        # Rows come back in the order they were inserted (Django's bulk_create
        # relies on the same).
        for obj, (pk_value,) in zip(objs, cursor.fetchall(), strict=True):
            setattr(obj, pk.attname, pk_value)
            obj._state.adding = False


def bulk_set(objs: Sequence[models.Model], field_names: Sequence[str]) -> None:
    """UPDATE ``field_names`` of ``objs`` (all of one model) to their values in memory."""
    if not objs:
        return
    model = type(objs[0])
    pk = model._meta.pk
    assert pk is not None
    fields = [model._meta.get_field(name) for name in field_names]
    concrete = [f for f in fields if isinstance(f, models.Field) and f.concrete]
    assert len(concrete) == len(fields)
    document = _document(objs, [pk, *concrete]) if connection.vendor == "postgresql" else None
    if document is None:
        model._default_manager.bulk_update(objs, list(field_names), batch_size=1000)
        return
    table = connection.ops.quote_name(model._meta.db_table)
    assignments = ", ".join(f"{_q(f)} = r.{_q(f)}" for f in concrete)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS t SET {assignments} "
            f"FROM jsonb_to_recordset(%s::jsonb) AS r({_columns([pk, *concrete])}) "
            f"WHERE t.{_q(pk)} = r.{_q(pk)}",
            [document],
        )


def bulk_upsert(
    objs: Sequence[models.Model],
    *,
    unique_fields: Sequence[str],
    update_fields: Sequence[str],
) -> None:
    """INSERT ``objs`` (all of one model, primary keys set: no auto one is read
    back); a row that conflicts on ``unique_fields`` gets ``update_fields`` instead,
    as ``bulk_create(update_conflicts=True)`` does."""
    if not objs:
        return
    model = type(objs[0])
    fields = list(model._meta.concrete_fields)
    for obj in objs:
        for f in fields:
            f.pre_save(obj, add=True)
    document = _document(objs, fields) if connection.vendor == "postgresql" else None
    if document is None:
        model._default_manager.bulk_create(
            objs,
            batch_size=1000,
            update_conflicts=True,
            unique_fields=list(unique_fields),
            update_fields=list(update_fields),
        )
        return
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(_q(f) for f in fields)
    conflict = ", ".join(_q(model._meta.get_field(name)) for name in unique_fields)  # type: ignore[arg-type]
    updates = ", ".join(
        f"{_q(model._meta.get_field(name))} = EXCLUDED.{_q(model._meta.get_field(name))}"  # type: ignore[arg-type]
        for name in update_fields
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({names}) SELECT {names} "
            f"FROM jsonb_to_recordset(%s::jsonb) AS r({_columns(fields)}) "
            f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}",
            [document],
        )
    for obj in objs:
        obj._state.adding = False

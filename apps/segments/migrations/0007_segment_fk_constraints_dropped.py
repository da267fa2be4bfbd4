# The segment foreign keys of memberships and of the outbox lose their database
# constraint (Django's db_constraint=False; the ORM's cascade stays). Each row a
# swap inserted fired a trigger that looked its segment up and locked that
# segment row FOR KEY SHARE: a million times over the same few rows in a first
# cluster run (2.4 s and 2.3 s of it, bench/README.md). The writers now lock each
# segment row once (apps/segments/memberships.py, _segments_kept) and a segment's
# deletion locks it FOR UPDATE before collecting its memberships (segment_delete).
#
# On PostgreSQL, ALTER TABLE ... DROP CONSTRAINT needs an ACCESS EXCLUSIVE lock on
# the table; while it queues behind an open transaction, every read of the table
# queues behind it. So each attempt waits at most LOCK_TIMEOUT for its lock and
# gives up, and the migration tries again (readers wait that long at most, once
# per attempt). SQLite keeps the constraint: it writes one transaction at a
# time, and rebuilding the table for it gains nothing.

import random
import time

import django.db.models.deletion
from django.db import OperationalError, migrations, models, transaction

FKS = (
    ("segments_membership", "segment_id"),
    ("segments_membershipchange", "segment_id"),
)
# Dropping a foreign key locks the referenced table (segments_segment) ACCESS EXCLUSIVE
# as well as the referencing one: while an attempt waits, queries of both queue
# behind it. So an attempt waits at most 50 ms, and the pauses between attempts
# grow (with jitter, 0.1 s to 3 s), about two minutes in all before it gives up.
LOCK_TIMEOUT = "50ms"
ATTEMPTS = 60


def _constraint(cursor, table: str, column: str) -> str | None:
    cursor.execute(
        """SELECT c.conname FROM pg_constraint c
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
            WHERE c.contype = 'f' AND c.conrelid = %s::regclass AND a.attname = %s""",
        [table, column],
    )
    row = cursor.fetchone()
    return row[0] if row else None


def _with_short_locks(connection, statements) -> None:
    for attempt in range(ATTEMPTS):
        try:
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                statements(cursor)
            return
        except OperationalError:
            if attempt == ATTEMPTS - 1:
                raise
            time.sleep(min(3.0, 0.1 * 1.25**attempt) * random.uniform(0.5, 1.5))


def drop(apps, schema_editor) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    for table, column in FKS:

        def statements(cursor, table=table, column=column) -> None:
            name = _constraint(cursor, table, column)
            if name is not None:
                cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')

        _with_short_locks(connection, statements)


def create(apps, schema_editor) -> None:
    """Back: the constraints again, as Django names them; NOT VALID first (no scan
    under the lock), then validated (reads and writes go on meanwhile). Rows of
    segments that no longer exist would fail the validation: none should exist,
    and any that do are deleted first."""
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    for model_name in ("membership", "membershipchange"):
        model = apps.get_model("segments", model_name)
        field = model._meta.get_field("segment")
        table, column = model._meta.db_table, field.column
        # Quoted already (segments_membership_segment_id_912e4c68_fk_segments_segment_id).
        name = str(
            schema_editor._fk_constraint_name(model, field, "_fk_%(to_table)s_%(to_column)s")
        )

        def statements(cursor, table=table, column=column, name=name) -> None:
            if _constraint(cursor, table, column) is None:
                cursor.execute(
                    f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY ({column}) "
                    "REFERENCES segments_segment (id) DEFERRABLE INITIALLY DEFERRED NOT VALID"
                )

        _with_short_locks(connection, statements)
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} t WHERE NOT EXISTS "
                f"(SELECT 1 FROM segments_segment s WHERE s.id = t.{column})"
            )
            cursor.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("segments", "0006_iso_ts_without_subtransaction"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="membership",
                    name="segment",
                    field=models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="memberships",
                        to="segments.segment",
                    ),
                ),
                migrations.AlterField(
                    model_name="membershipchange",
                    name="segment",
                    field=models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="segments.segment",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop, create, atomic=False)],
        ),
    ]
